"""The engine: model resolution, validation, the pre stage, cross-request batching and top_k.

Transport-agnostic: the gRPC servicer turns messages into :class:`RerankInput` and maps the
project's exceptions to status codes. Statistics go to a :class:`StatsSink` (the metrics module
implements it); the engine never touches Prometheus. :meth:`Engine.rerank` is the one request
path: serving, warm-up and in-process callers (:class:`reranker.engine.LocalEngine`) all use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from reranker.engine.config import EngineConfig
from reranker.engine.loader import open_model
from reranker.engine.prepare import PassageItem, QueryItem
from reranker.engine.served import ModelDescription, NullSink, Pair, ServedModel, StatsSink
from reranker.errors import CapacityError, ConfigError, DeadlineError, InvalidInputError, NotFoundError

log = logging.getLogger(__name__)

WARMUP = ("warm up query", "a short passage to warm up every graph")


@dataclass(frozen=True)
class RerankInput:
    """One request: a query and its candidates (ids, and texts where the store lacks them)."""

    query: str
    ids: Sequence[str]
    texts: Sequence[str]
    """One per id; empty = look the id up in the model's passage store."""
    model: str = ""
    """Empty = the default model."""
    top_k: int = 0
    """0 = all candidates."""


@dataclass(frozen=True)
class Scored:
    id: str
    index: int
    """Position of the candidate in the request."""
    score: float
    truncated: bool


@dataclass
class RerankOutput:
    """The answer: results sorted by score (descending) and where the time went, in milliseconds."""

    model: str
    results: list[Scored]
    queue_ms: float = 0.0
    """Longest wait of one of the request's pairs for its batch."""
    inference_ms: float = 0.0
    """Compute time: the pre stage plus every batch that held one of the request's pairs."""
    total_ms: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    """``candidates`` and ``truncated`` counts."""


class Engine:
    """Serves several models; one is the default."""

    def __init__(self, models: Sequence[ServedModel], default: str, sink: StatsSink | None = None, *,
                 pre_workers: int = 2, max_pending_requests: int = 64, max_pending_encodes: int = 400) -> None:
        if min(pre_workers, max_pending_requests, max_pending_encodes) < 1:
            raise ConfigError(f"pre_workers, max_pending_requests and max_pending_encodes must be >= 1, got "
                              f"{pre_workers}, {max_pending_requests} and {max_pending_encodes}")
        # The pre stage (tokenising, encoding the query and any passages sent as text) runs on a
        # bounded pool, and requests waiting for it count against a bound too: backpressure covers
        # the whole request, not only the batcher's queue.
        self._pre_pool = ThreadPoolExecutor(max_workers=pre_workers, thread_name_prefix="reranker-pre")
        self._pending = 0
        self._pending_encodes = 0
        self.max_pending_requests = max_pending_requests
        self.max_pending_encodes = max_pending_encodes
        self.models = {m.name: m for m in models}
        if len(self.models) != len(models):
            raise ConfigError("model names must be unique")
        if default not in self.models:
            raise ConfigError(f"default model {default!r} is not among the served models {sorted(self.models)}")
        self.default = default
        self.sink = sink or NullSink()

    @classmethod
    def from_config(cls, cfg: EngineConfig, sink: StatsSink | None = None) -> Engine:
        """Open every model of ``cfg`` (artifact checksums verified, stores checked against them)."""
        sink = sink or NullSink()
        return cls([open_model(spec, cfg, sink) for spec in cfg.models], cfg.default, sink, pre_workers=cfg.pre_workers,
                   max_pending_requests=cfg.max_pending_requests, max_pending_encodes=cfg.max_pending_encodes)

    def describe(self) -> list[ModelDescription]:
        """Every served model's description, in configuration order."""
        return [m.description for m in self.models.values()]

    def resolve(self, name: str) -> ServedModel:
        model = self.models.get(name or self.default)
        if model is None:
            raise NotFoundError(f"unknown model {name!r}; this server serves {', '.join(sorted(self.models))} "
                                f"(empty = the default, {self.default})")
        return model

    def validate(self, req: RerankInput, model: ServedModel) -> None:
        limits = model.limits
        if not req.query.strip():
            raise InvalidInputError("the query is empty; send the text to rank the candidates against")
        if len(req.query) > limits.max_query_chars:
            raise InvalidInputError(f"the query has {len(req.query)} characters; at most {limits.max_query_chars} "
                                    "are allowed")
        if not req.ids:
            raise InvalidInputError("no candidates: send at least one candidate (an id, and text unless the id is "
                                    "in the model's passage store)")
        if len(req.ids) > limits.max_candidates:
            raise InvalidInputError(f"{len(req.ids)} candidates sent; model {model.name} takes at most "
                                    f"{limits.max_candidates} per request (split larger lists)")
        if req.top_k < 0:
            raise InvalidInputError(f"top_k must be >= 0 (0 = all), got {req.top_k}")
        long = [i for i, t in enumerate(req.texts) if len(t) > limits.max_passage_chars]
        if long:
            raise InvalidInputError(f"candidate(s) at index {long[:5]} have more than {limits.max_passage_chars} "
                                    "characters of text; send at most that much")

    async def rerank(self, req: RerankInput, *, deadline: float | None = None) -> RerankOutput:
        """Score every candidate; ``deadline`` is a ``time.monotonic()`` instant (None = none).

        Raises InvalidInputError, NotFoundError, CapacityError or DeadlineError (see reranker.errors).
        """
        started = time.monotonic()
        model = self.resolve(req.model)
        self.validate(req, model)
        encodes = model.prepare.needs_encoding(req.ids, req.texts)  # passages the pre stage must encode
        if self._pending >= self.max_pending_requests or (
                encodes and self._pending_encodes and self._pending_encodes + encodes > self.max_pending_encodes):
            raise CapacityError(f"server over capacity: {self._pending} requests with {self._pending_encodes} passages "
                                f"to encode are waiting to be prepared (at most {self.max_pending_requests} requests "
                                f"and {self.max_pending_encodes} passages); retry later")
        loop = asyncio.get_running_loop()
        pre_start = time.monotonic()
        self._pending += 1
        self._pending_encodes += encodes
        try:
            query, passages = await loop.run_in_executor(self._pre_pool, self._prepare, model, req, deadline)
        except DeadlineError:
            self.sink.dropped(model.name, len(req.ids))
            raise
        finally:
            self._pending -= 1
            self._pending_encodes -= encodes
        pre_seconds = time.monotonic() - pre_start
        hits = sum(p.from_store for p in passages)
        self.sink.store_lookups(model.name, hits, len(passages) - hits if model.has_store else 0)
        now = time.monotonic()
        pairs = [Pair(query, p, now) for p in passages]
        self.sink.queue_depth(model.name, model.batcher.queue_depth + len(pairs))
        results = await model.batcher.submit(pairs, deadline=deadline)
        self.sink.queue_depth(model.name, model.batcher.queue_depth)
        scores = np.array([r.score for r in results], dtype=np.float32)
        queue_s = max((r.waited for r in results), default=0.0)
        batches = {r.batch_started: r.batch_seconds for r in results}
        order = np.argsort(-scores, kind="stable")
        if req.top_k:
            order = order[: req.top_k]
        out = [Scored(req.ids[i], int(i), float(scores[i]), passages[i].truncated) for i in order.tolist()]
        total = time.monotonic() - started
        return RerankOutput(model.name, out, queue_ms=queue_s * 1000.0,
                            inference_ms=(pre_seconds + sum(batches.values())) * 1000.0, total_ms=total * 1000.0,
                            stats={"candidates": len(passages), "truncated": sum(p.truncated for p in passages)})

    @staticmethod
    def _prepare(model: ServedModel, req: RerankInput, deadline: float | None) -> tuple[QueryItem, list[PassageItem]]:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineError("the deadline passed before the request could be prepared")
        return model.prepare.query(req.query), model.prepare.passages(req.ids, req.texts)

    async def warm_up(self) -> None:
        """One request per model through :meth:`rerank` (every graph runs once), not counted in the stats."""
        sink, self.sink = self.sink, NullSink()
        try:
            for model in self.models.values():
                model_sink, model.sink = model.sink, self.sink
                try:
                    await self.rerank(RerankInput(WARMUP[0], [""], [WARMUP[1]], model=model.name))
                finally:
                    model.sink = model_sink
        finally:
            self.sink = sink

    async def close(self) -> None:
        for model in self.models.values():
            await model.batcher.close()
        self._pre_pool.shutdown(wait=False)
