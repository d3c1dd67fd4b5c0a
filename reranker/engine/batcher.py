"""A model-agnostic asyncio dynamic batcher.

Requests submit their work items as one unit; a single worker packs items of concurrent requests
into batches (at most ``max_batch_size`` items and ``max_batch_cost`` cost: the oldest waiting item
and its neighbours in cost, so that similar lengths run together), waiting at most ``max_wait_s``
for a batch to fill, and runs the ready batches in one trip to a worker thread so the event loop
stays responsive.

Contract (tested with pure async fakes):

* results come back in the order and number of the submitted items;
* an exception raised for a batch reaches every caller with items in that batch;
* admission is all-or-nothing: a request whose items do not fit the bounded queue is refused at
  once with :class:`CapacityError`, before any work;
* a caller's deadline travels with its items: items whose deadline passed, or whose caller
  cancelled, are dropped without being computed, from the queue and again before each batch
  runs (a batch holding only abandoned items does not run), and every drop is counted;
* planning a batch costs O(its items), not O(the queue) (:mod:`reranker.engine.pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from reranker.engine.pending import Item, PendingQueue, Ticket
from reranker.errors import CapacityError, ConfigError, DeadlineError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatcherConfig:
    """Limits of one model's batcher: the engine's one batching budget."""

    max_batch_size: int = 16
    """Most items (pairs) per batch (CPU-tuned: on 2 cores a 6-layer cross-encoder ran 1.9x faster in
    batches of 16 than of 128; raise it on a GPU). The engine encodes passages sent as text in
    batches of the same budget."""
    max_batch_cost: int = 4096
    """Most cost per batch (cost = items x the largest item cost, i.e. padded tokens)."""
    max_wait_s: float = 0.002
    """How long a non-full batch waits for more work."""
    max_batches_per_run: int = 8
    """Ready batches handed to the worker thread together (fewer thread hops per request)."""
    max_queue: int = 20000
    """Most items waiting; a request that would exceed it is refused with RESOURCE_EXHAUSTED."""
    maxsim_batch_pairs: int = 1024
    """Most pairs per batch of a MaxSim model scored on CPU without padding (ColBERT from its states:
    one matrix product per query, so a batch holds every candidate of a request and runs without
    waiting for others: ``max_wait_s`` is 0 there; the cost bound counts these pairs at the longest
    query and passage)."""

    def __post_init__(self) -> None:
        limits = ("max_batch_size", "max_batch_cost", "max_batches_per_run", "max_queue", "maxsim_batch_pairs")
        bad = {name: getattr(self, name) for name in limits if getattr(self, name) < 1}
        if bad:
            raise ConfigError(f"batcher limits must be >= 1, got {', '.join(f'{k}={v}' for k, v in bad.items())}")
        if not 0 <= self.max_wait_s <= 10:
            raise ConfigError(f"max_wait_s must be in [0, 10] seconds, got {self.max_wait_s}")


@dataclass(frozen=True)
class BatchStats:
    """What the batcher reports for each executed batch."""

    size: int
    cost: int
    seconds: float


class Batcher(Generic[T, R]):
    """Runs ``run_batch(list of items) -> list of results`` on batches packed across callers."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        cfg: BatcherConfig,
        *,
        cost: Callable[[T], int] = lambda _: 1,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._run_batch, self.cfg, self._cost = run_batch, cfg, cost
        self._on_batch, self._on_drop = on_batch, on_drop
        self._queue = PendingQueue()
        self._batch_s = 0.0
        """Running mean of a batch's seconds (how long a trip to the worker thread takes per batch)."""
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.executor: Executor | None = None
        """Where batches run (None: the event loop's default executor)."""

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def close(self) -> None:
        """Stop after the queued work is done."""
        self._closed = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    async def submit(self, payloads: Sequence[T], *, deadline: float | None = None) -> list[R]:
        """Queue one request's items and wait for all their results (in order).

        ``deadline`` is a ``time.monotonic()`` instant; work still queued after it is dropped.
        Raises CapacityError (queue full or shutting down), DeadlineError (dropped) or what
        ``run_batch`` raised for a batch holding one of the items.
        """
        if self._closed:
            raise CapacityError("the server is shutting down and accepts no new work")
        if not payloads:
            return []
        if len(self._queue) + len(payloads) > self.cfg.max_queue:
            raise CapacityError(
                f"server over capacity: {len(self._queue)} pairs queued, this request adds "
                f"{len(payloads)}, the queue holds at most {self.cfg.max_queue}; retry later"
            )
        self.start()
        loop, now = asyncio.get_running_loop(), time.monotonic()
        ticket = Ticket(deadline)
        items: list[Item[T, R]] = [Item(p, max(1, int(self._cost(p))), ticket, loop.create_future(), now) for p in payloads]
        self._queue.add(ticket, items)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        except BaseException:
            ticket.cancelled = True  # anything of ours still queued is dropped, not computed
            for i in items:
                if not i.future.done():
                    i.future.cancel()
            dropped = self._queue.drop(ticket)
            if dropped:
                self._fail(dropped)
            raise

    def _fail(self, dropped: list[Item[T, R]]) -> None:
        """Drop abandoned items uncomputed: their callers get DeadlineError, the drop is counted."""
        for item in dropped:
            if not item.future.done():
                item.future.set_exception(
                    DeadlineError("the deadline passed (or the caller cancelled) before the work was computed")
                )
        if self._on_drop:
            self._on_drop(len(dropped))

    def _run_batches(self, batches: list[list[Item[T, R]]]) -> list[tuple[list[Item[T, R]], Sequence[R] | Exception, float]]:
        """Run several batches in the worker thread: each batch's live items (those of callers that
        are still waiting: abandoned items are dropped here too, batch by batch), their results or
        exception, and the batch's time."""
        out: list[tuple[list[Item[T, R]], Sequence[R] | Exception, float]] = []
        for batch in batches:
            now = time.monotonic()
            live = [i for i in batch if not i.ticket.expired(now)]
            if not live:
                out.append((live, [], 0.0))
                continue
            started = time.perf_counter()
            try:
                results = self._run_batch([i.payload for i in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
                out.append((live, results, time.perf_counter() - started))
            except Exception as exc:
                out.append((live, exc, time.perf_counter() - started))
        return out

    def _wait_left(self) -> float:
        """Seconds the oldest waiting item may still wait for its batch to grow (<= 0: run now)."""
        return self._queue.oldest().enqueued + self.cfg.max_wait_s - time.monotonic()

    def _full(self) -> bool:
        n = len(self._queue)
        return n >= self.cfg.max_batch_size or n * self._queue.max_cost() >= self.cfg.max_batch_cost

    def _ready(self, batches_in_trip: int) -> bool:
        """Whether one more batch joins this trip: a full one, one whose wait is over, or a partial one
        whose wait would end before the trip's batches do (waiting for it would only cost a second trip)."""
        return self._full() or self._wait_left() <= batches_in_trip * self._batch_s

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._wait_left()
            if wait > 0 and not self._full() and not self._closed:
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=wait)
                continue
            expired = self._queue.expired(time.monotonic())
            if expired:
                self._fail(expired)
            if not self._queue:
                continue
            # every batch that is ready now runs in one trip to the worker thread: a request of
            # 100 pairs in batches of 16 pays one thread hop, not seven
            cfg = self.cfg
            batches = [self._queue.take(cfg.max_batch_size, cfg.max_batch_cost)]
            while self._queue and len(batches) < cfg.max_batches_per_run and self._ready(len(batches)):
                batches.append(self._queue.take(cfg.max_batch_size, cfg.max_batch_cost))
            outcomes = await loop.run_in_executor(self.executor, self._run_batches, batches)
            for batch, (live, outcome, seconds) in zip(batches, outcomes, strict=True):
                if len(live) < len(batch):
                    kept = {id(i) for i in live}
                    self._fail([i for i in batch if id(i) not in kept])
                if not live:
                    continue
                self._batch_s += 0.2 * (seconds - self._batch_s) if self._batch_s else seconds
                if self._on_batch:
                    self._on_batch(BatchStats(len(live), len(live) * max(i.cost for i in live), seconds))
                if isinstance(outcome, Exception):  # one failure reaches every caller of the batch
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(outcome)
                    continue
                for item, result in zip(live, outcome, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
