"""The engine: validation, model resolution, passage-store lookups, cross-request batching, top_k.

Transport-agnostic: the gRPC servicer turns messages into :class:`RerankInput` and maps the
project's exceptions to status codes. Statistics go to a :class:`StatsSink` (the metrics module
implements it); the engine never touches Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from reranker.engine.batcher import Batcher, BatcherConfig, BatchStats
from reranker.errors import CapacityError, ConfigError, DeadlineError, InvalidInputError, NotFoundError
from reranker.runtime.scorer import OnnxScorer, PassageItem, QueryItem

log = logging.getLogger(__name__)

SCORE_KINDS = {
    "bert_cat": "raw logit of a cross-encoder",
    "bert_dot": "dot product of query and passage vectors",
    "colbert": "MaxSim: sum over query tokens of the best cosine",
    "prett": "raw logit of the joint upper layers",
    "tk": "kernel-pooling score",
}


@dataclass(frozen=True)
class Limits:
    """Per-model request limits (listed by ListModels)."""

    max_candidates: int = 1000
    """Candidates per request."""
    max_query_chars: int = 2000
    """Characters in a query (word pieces are limited by the model)."""
    max_passage_chars: int = 20000
    """Characters in one candidate text (longer texts are refused; the model cuts at its length)."""

    def __post_init__(self) -> None:
        for name in ("max_candidates", "max_query_chars", "max_passage_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class RerankInput:
    query: str
    ids: Sequence[str]
    texts: Sequence[str]
    model: str = ""
    top_k: int = 0


@dataclass(frozen=True)
class Scored:
    id: str
    index: int
    score: float
    truncated: bool


@dataclass
class RerankOutput:
    model: str
    results: list[Scored]
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)


class StatsSink(Protocol):
    """Receives the engine's statistics (see reranker.server.metrics)."""

    def batch(self, model: str, stats: BatchStats) -> None:
        return None
    def request(self, model: str, code: str, seconds: float, queue_seconds: float, candidates: int,
                truncated: int) -> None:
        return None
    def store_lookups(self, model: str, hits: int, misses: int) -> None:
        return None
    def queue_depth(self, model: str, depth: int) -> None:
        return None
    def dropped(self, model: str, items: int) -> None:
        return None


class NullSink(StatsSink):
    """Discards every statistic (the protocol's methods do nothing)."""


@dataclass(frozen=True)
class _Pair:
    query: QueryItem
    passage: PassageItem
    enqueued: float


class ServedModel:
    """One model: its scorer, its batcher and its limits."""

    def __init__(self, name: str, scorer: OnnxScorer, limits: Limits, batching: BatcherConfig,
                 sink: StatsSink) -> None:
        self.name, self.scorer, self.limits, self.sink = name, scorer, limits, sink
        self.batcher: Batcher[_Pair, tuple[float, float]] = Batcher(
            self._run, batching, cost=lambda pair: pair.passage.length + pair.query.length,
            on_batch=lambda s: sink.batch(name, s), on_drop=lambda n: sink.dropped(name, n))

    def _run(self, pairs: list[_Pair]) -> list[tuple[float, float]]:
        started = time.monotonic()
        scores = self.scorer.score([p.query for p in pairs], [p.passage for p in pairs])
        return [(float(s), started - p.enqueued) for s, p in zip(scores, pairs, strict=True)]

    @property
    def store_passages(self) -> int:
        return len(self.scorer.store) if self.scorer.store is not None else 0

    @property
    def store_bytes(self) -> int:
        store = self.scorer.store
        return int(store.vectors.nbytes) if store is not None else 0


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
        """Score every candidate; ``deadline`` is a ``time.monotonic()`` instant (None = none)."""
        started = time.monotonic()
        model = self.resolve(req.model)
        self.validate(req, model)
        # passages that must be encoded from their text in the pre stage (split models, ids not stored)
        store = model.scorer.store
        encodes = sum(1 for pid, text in zip(req.ids, req.texts, strict=True)
                      if text and (store is None or pid not in store)) if model.scorer.split else 0
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
        self.sink.store_lookups(model.name, hits, len(passages) - hits if model.scorer.store is not None else 0)
        now = time.monotonic()
        pairs = [_Pair(query, p, now) for p in passages]
        self.sink.queue_depth(model.name, model.batcher.queue_depth + len(pairs))
        results = await model.batcher.submit(pairs, deadline=deadline)
        self.sink.queue_depth(model.name, model.batcher.queue_depth)
        scores = np.array([s for s, _ in results], dtype=np.float32)
        queue_s = max((q for _, q in results), default=0.0)
        order = np.argsort(-scores, kind="stable")
        if req.top_k:
            order = order[: req.top_k]
        out = [Scored(req.ids[i], int(i), float(scores[i]), passages[i].truncated) for i in order.tolist()]
        total = time.monotonic() - started
        return RerankOutput(model.name, out, queue_ms=queue_s * 1000.0,
                            inference_ms=max(total - queue_s, pre_seconds) * 1000.0, total_ms=total * 1000.0,
                            stats={"candidates": len(passages), "truncated": sum(p.truncated for p in passages),
                                   "queue_us": int(queue_s * 1e6)})

    @staticmethod
    def _prepare(model: ServedModel, req: RerankInput, deadline: float | None) -> tuple[QueryItem, list[PassageItem]]:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineError("the deadline passed before the request could be prepared")
        return model.scorer.prepare_query(req.query), model.scorer.prepare_passages(req.ids, req.texts)

    async def close(self) -> None:
        for model in self.models.values():
            await model.batcher.close()
        self._pre_pool.shutdown(wait=False)
