"""The dynamic batcher's contract, with pure async fakes (no model)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from reranker.engine import batcher as batcher_module
from reranker.engine.batcher import Batcher, BatcherConfig, BatchStats
from reranker.engine.pending import Item, PendingQueue, Ticket
from reranker.errors import CapacityError, ConfigError, DeadlineError


def run(coro):
    return asyncio.run(coro)


class Recorder:
    """A batch function that doubles its inputs and remembers the batches it saw."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay, self.fail_on = delay, fail_on
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"boom on {self.fail_on}")
        return [2 * i for i in items]


def test_results_keep_order_and_number_across_concurrent_callers() -> None:
    async def main():
        rec = Recorder(delay=0.01)
        b = Batcher(rec, BatcherConfig(max_batch_size=7, max_wait_s=0.02), cost=lambda x: 1 + x % 5)
        requests = [list(range(k * 10, k * 10 + n)) for k, n in enumerate([3, 9, 1, 5, 12])]
        outs = await asyncio.gather(*(b.submit(r) for r in requests))
        await b.close()
        return rec, requests, outs

    rec, requests, outs = run(main())
    for req, out in zip(requests, outs, strict=True):
        assert out == [2 * i for i in req]
    assert all(len(batch) <= 7 for batch in rec.batches)
    assert sorted(i for batch in rec.batches for i in batch) == sorted(i for r in requests for i in r)
    assert any(len({i // 10 for i in batch}) > 1 for batch in rec.batches), "requests never shared a batch"


def test_one_failure_reaches_every_caller_of_the_batch() -> None:
    async def main():
        b = Batcher(Recorder(fail_on=4), BatcherConfig(max_batch_size=100, max_wait_s=0.05))
        results = await asyncio.gather(b.submit([1, 2]), b.submit([3, 4]), b.submit([5]), return_exceptions=True)
        ok = await b.submit([7])  # the batcher keeps working after a failed batch
        await b.close()
        return results, ok

    results, ok = run(main())
    assert all(isinstance(r, ValueError) and "boom on 4" in str(r) for r in results)
    assert ok == [14]


def test_max_wait_flushes_a_partial_batch() -> None:
    async def main():
        stats: list[BatchStats] = []
        b = Batcher(Recorder(), BatcherConfig(max_batch_size=1000, max_wait_s=0.05), on_batch=stats.append)
        start = time.monotonic()
        out = await b.submit([1, 2, 3])
        waited = time.monotonic() - start
        await b.close()
        return out, waited, stats

    out, waited, stats = run(main())
    assert out == [2, 4, 6]
    assert 0.04 <= waited < 1.0
    assert [s.size for s in stats] == [3]


def test_token_budget_splits_batches() -> None:
    async def main():
        rec = Recorder()
        b = Batcher(rec, BatcherConfig(max_batch_size=100, max_batch_cost=20, max_wait_s=0.01), cost=lambda x: 10)
        await b.submit([1, 2, 3, 4, 5])
        await b.close()
        return rec

    assert all(len(batch) <= 2 for batch in run(main()).batches)


def test_over_capacity_is_refused_at_once_before_any_work() -> None:
    async def main():
        rec = Recorder(delay=0.2)
        b = Batcher(rec, BatcherConfig(max_batch_size=2, max_batches_per_run=1, max_wait_s=0.0, max_queue=4))
        first = asyncio.ensure_future(b.submit([1, 2, 3, 4]))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(CapacityError, match="queue holds at most 4"):
            await b.submit([5, 6, 7])
        refused_in = time.monotonic() - start
        await first
        await b.close()
        return rec, refused_in

    rec, refused_in = run(main())
    assert refused_in < 0.05
    assert all(i not in (5, 6, 7) for batch in rec.batches for i in batch)


def test_expired_and_cancelled_work_is_dropped_not_computed() -> None:
    async def main():
        rec = Recorder(delay=0.15)
        dropped: list[int] = []
        b = Batcher(rec, BatcherConfig(max_batch_size=1, max_wait_s=0.0), on_drop=dropped.append)
        blocker = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.02)  # [1] is running now
        late = asyncio.ensure_future(b.submit([2, 3], deadline=time.monotonic() + 0.05))
        cancelled = asyncio.ensure_future(b.submit([4, 5]))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await blocker
        with pytest.raises(DeadlineError):
            await late
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await b.submit([6]) == [12]
        await b.close()
        return rec, dropped

    rec, dropped = run(main())
    computed = {i for batch in rec.batches for i in batch}
    assert computed == {1, 6}
    assert sum(dropped) == 4


def test_settings_validated_eagerly() -> None:
    with pytest.raises(ConfigError, match="max_batch_size=0"):
        BatcherConfig(max_batch_size=0)
    with pytest.raises(ConfigError, match="max_wait_s"):
        BatcherConfig(max_wait_s=-1)


def test_ready_batches_share_one_worker_trip() -> None:
    """A request larger than a batch runs in several batches, handed to the worker thread together."""

    async def main():
        threads: list[int] = []

        def record(items: list[int]) -> list[int]:
            threads.append(threading.get_ident())
            return [2 * i for i in items]

        stats: list[BatchStats] = []
        b = Batcher(record, BatcherConfig(max_batch_size=4, max_wait_s=0.0, max_batches_per_run=8), on_batch=stats.append)
        trips: list[int] = []
        run_batches = b._run_batches
        b._run_batches = lambda batches: trips.append(len(batches)) or run_batches(batches)  # type: ignore[method-assign]
        out = await b.submit(list(range(10)))
        await b.close()
        return out, stats, threads, trips

    out, stats, threads, trips = run(main())
    assert out == [2 * i for i in range(10)]
    assert [s.size for s in stats] == [4, 4, 2]
    assert len(threads) == 3 and trips == [3]


class _Counted(Item):
    """An item that counts every read and write of its fields (the batcher's visits to a pair)."""

    visits = 0

    def __getattribute__(self, name: str):
        _Counted.visits += 1
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value) -> None:
        _Counted.visits += 1
        object.__setattr__(self, name, value)


def _visits_per_item(monkeypatch: pytest.MonkeyPatch, requests: int, size: int) -> float:
    """Queue ``requests`` x ``size`` items behind a blocked batch, release it, and count the batcher's
    visits per item until every request is answered."""
    monkeypatch.setattr(batcher_module, "Item", _Counted)
    gate = threading.Event()

    def run_batch(items: list[int]) -> list[int]:
        if items == [-1]:
            gate.wait(5)
        return [2 * i for i in items]

    async def main():
        b = Batcher(
            run_batch, BatcherConfig(max_batch_size=16, max_batch_cost=16 * 40, max_wait_s=0.0), cost=lambda x: 1 + abs(x) % 37
        )
        blocker = asyncio.ensure_future(b.submit([-1]))
        await asyncio.sleep(0.02)  # the blocker's batch is running: everything below queues behind it
        _Counted.visits = 0
        jobs = [
            asyncio.ensure_future(b.submit(list(range(k * size, (k + 1) * size)), deadline=time.monotonic() + 60))
            for k in range(requests)
        ]
        await asyncio.sleep(0)
        assert b.queue_depth == requests * size
        gate.set()
        outs = await asyncio.gather(*jobs)
        await blocker
        await b.close()
        assert outs == [[2 * i for i in range(k * size, (k + 1) * size)] for k in range(requests)]

    run(main())
    return _Counted.visits / (requests * size)


def test_planning_a_batch_does_not_scan_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Visits per pair stay flat when the queue is 16x deeper (a scan per batch would make them grow
    with the queue: quadratic work overall); counted, not timed."""
    small = _visits_per_item(monkeypatch, 1, 200)
    large = _visits_per_item(monkeypatch, 16, 200)
    assert large <= 1.3 * small + 2, f"{small:.1f} visits per pair with 200 queued, {large:.1f} with 3,200"
    assert large < 60


def test_queue_takes_the_oldest_and_its_cost_neighbours() -> None:
    loop = asyncio.new_event_loop()
    try:
        q = PendingQueue()
        old, new = Ticket(None), Ticket(None)
        q.add(old, [Item(c, c, old, loop.create_future(), 1.0) for c in (5, 1, 9)])
        q.add(new, [Item(c, c, new, loop.create_future(), 2.0) for c in (5, 6, 4, 1, 9, 20)])
        assert q.oldest().payload == 5 and q.max_cost() == 20
        # the oldest (5) then dearer neighbours (5, 6, 9, 9) while 5 x 9 <= 45, then none cheaper fits 6 x 9
        assert [i.payload for i in q.take(max_items=8, max_cost=45)] == [5, 5, 6, 9, 9]
        assert [i.payload for i in q.take(max_items=2, max_cost=1000)] == [1, 1]  # the old request's 1 leads
        assert [i.payload for i in q.drop(new)] == [4, 20] and len(q) == 0
        assert q.drop(new) == [] and q.expired(now=1e9) == []
    finally:
        loop.close()
