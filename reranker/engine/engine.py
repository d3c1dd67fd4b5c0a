"""The engine: model resolution, validation, the pre stage, cross-request batching and top_k.

Transport-agnostic: the gRPC servicer turns messages into :class:`RerankInput` and maps the
project's exceptions to status codes. Statistics go to a :class:`StatsSink` (the metrics module
implements it); the engine never touches Prometheus. :meth:`Engine.rerank` is the one request
path: serving, warm-up and in-process callers (:class:`reranker.engine.LocalEngine`) all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from reranker.engine.admission import Admission, Stake, Watch
from reranker.engine.answer import answer, fusion_for, replace_invalid, validate
from reranker.engine.cache import Cached, ScoreCache
from reranker.engine.cascade import run_cascade
from reranker.engine.config import EngineConfig
from reranker.engine.loader import open_model
from reranker.engine.messages import RerankInput, RerankOutput
from reranker.engine.prepare import Passages, QueryItem
from reranker.engine.priority import lower_priority
from reranker.engine.served import ModelDescription, NullSink, Pair, ServedModel, StatsSink
from reranker.errors import ConfigError, DeadlineError, InvalidInputError, NotFoundError, StoreDamagedError, quoted
from reranker.fusion import FusionRule, rule_for_first_stage

log = logging.getLogger(__name__)
T = TypeVar("T")

WARMUP = ("warm up query", "a short passage to warm up every graph")
CACHED_TEXT = 1 << 18
"""Characters of candidate text above which a request is neither looked up in nor kept by the score
cache (hashing is on the event loop: 256 Ki characters take about a third of a millisecond)."""


class Engine:
    """Serves several models; one is the default."""

    def __init__(self, models: Sequence[ServedModel], cfg: EngineConfig, sink: StatsSink | None = None) -> None:
        """``models`` opened from ``cfg.models`` (same names, same order); every limit and default comes
        from ``cfg``, validated where it is defined. ConfigError when the models do not match ``cfg``."""
        names = [m.name for m in models]
        if names != [spec.name for spec in cfg.models]:
            raise ConfigError(f"the engine's models {names} are not the configured ones {[s.name for s in cfg.models]}")
        # The pre stage runs on two bounded pools: queries (tokenise, encode) and store lookups on
        # one, passages sent as text on the other, so that a cheap request never waits behind another
        # request's passage encoding. Waiting work counts against the admission bounds until it ends.
        lower = functools.partial(lower_priority, cfg.worker_nice)
        self._query_pool = ThreadPoolExecutor(cfg.pre_workers, "reranker-query", initializer=lower)
        self._encode_pool = ThreadPoolExecutor(cfg.pre_workers, "reranker-encode", initializer=lower)
        self._core_pool = ThreadPoolExecutor(max(2, len(models)), "reranker-core", initializer=lower)
        for model in models:  # batches run on the core pool, below the event loop's priority
            model.batcher.executor = self._core_pool
        self.admission = Admission(cfg.max_pending_requests, cfg.max_pending_encodes, cfg.max_queue_ms / 1000.0)
        self.models = {m.name: m for m in models}
        self.default = cfg.default
        self.sink = sink if sink is not None else NullSink()
        self._logged_invalid: set[tuple[str, str]] = set()
        self.cache = ScoreCache(int(cfg.cache_mb * 2**20))
        """Scores of candidates seen before (:mod:`reranker.engine.cache`)."""
        self.cascades = {c.name: c for c in cfg.cascades}
        """Deadline-aware cascades by name (:class:`CascadeSpec`)."""

    @classmethod
    def from_config(cls, cfg: EngineConfig, sink: StatsSink | None = None) -> Engine:
        """Open every model of ``cfg`` (artifact checksums verified, stores checked against them)."""
        sink = sink if sink is not None else NullSink()
        if cfg.runtime.numpy_threads:
            threadpool_limits(cfg.runtime.numpy_threads, user_api="blas")  # for the process (see RuntimeConfig)
        # opened in a thread at the workers' priority: the ONNX Runtime threads it starts inherit it
        with ThreadPoolExecutor(1, "reranker-open", initializer=functools.partial(lower_priority, cfg.worker_nice)) as opener:
            models = opener.submit(lambda: [open_model(spec, cfg, sink) for spec in cfg.models]).result()
        engine = cls(models, cfg, sink)
        for model in engine.models.values():  # stores configured with build_store that were not ready
            if model.build is not None:
                model.build.start()
        return engine

    @property
    def max_pending_requests(self) -> int:
        return self.admission.max_pending_requests

    @property
    def max_pending_encodes(self) -> int:
        return self.admission.max_pending_encodes

    @property
    def max_queue_ms(self) -> float:
        return self.admission.max_queue_s * 1000.0

    def describe(self) -> list[ModelDescription]:
        """Every served model's description, in configuration order."""
        return [m.description for m in self.models.values()]

    def resolve(self, name: str) -> ServedModel:
        model = self.models.get(name or self.default)
        if model is None:
            raise NotFoundError(
                f"unknown model {quoted(name)}; this server serves {', '.join(sorted([*self.models, *self.cascades]))} "
                f"(empty = the default, {self.default})"
            )
        return model

    validate = staticmethod(validate)
    """Refuse what no cutting can serve (:func:`reranker.engine.answer.validate`)."""

    fusion_for = staticmethod(fusion_for)

    def base_fusion(self, model_name: str, first_stage: str = "") -> FusionRule:
        """What a request's partial fusion override (a rule or a weight alone) starts from: the shipped
        choice for the first-stage kind it names, else the model's rule. InvalidInputError for a kind
        the model has no choice for."""
        cascade = self.cascades.get(model_name)
        if cascade is not None and cascade.models:  # a cascade's override starts from its first model tier's
            model_name = cascade.models[0]
        model = self.resolve(model_name)
        if not first_stage:
            return model.fusion
        try:
            return rule_for_first_stage(model.first_stage_rules, first_stage, model.name)
        except ConfigError as exc:
            raise InvalidInputError(str(exc)) from None

    async def rerank(self, req: RerankInput, *, deadline: float | None = None) -> RerankOutput:
        """Score every candidate; ``deadline`` is a ``time.monotonic()`` instant (None = none). A request
        naming a cascade is scored by the tier the cascade picks (:func:`reranker.engine.cascade.run_cascade`).

        Raises InvalidInputError, NotFoundError, CapacityError or DeadlineError (see reranker.errors).
        Abandoned work (deadline passed, or the calling task cancelled) stops at its next unit.
        """
        cascade = self.cascades.get(req.model)
        if cascade is not None:
            return await run_cascade(self, cascade, req, deadline)
        if req.tier or req.no_fallback:
            raise InvalidInputError(
                f"tier and no_fallback apply to a cascade ({', '.join(sorted(self.cascades)) or 'none served'}); "
                f"model {quoted(req.model or self.default)} is not one"
            )
        return await self.rerank_model(req, deadline)

    async def rerank_model(self, req: RerankInput, deadline: float | None) -> RerankOutput:
        """:meth:`rerank` of one served model (no cascade)."""
        started = time.monotonic()
        model = self.resolve(req.model)
        self.validate(req, model)
        cap = model.limits.max_passage_chars
        texts = model.prepare.texts_of(req.ids, req.texts)  # ids without text: the model's passages
        cut = [len(t) > cap for t in texts]
        texts = [t[:cap] for t in texts] if any(cut) else texts
        aggregate = req.aggregate or model.limits.aggregate
        keys = (  # hashed on the event loop: only requests of at most CACHED_TEXT characters of text
            self.cache.keys(model.name, model.identity, req.query, req.ids, texts, model.prepare.stored, aggregate)
            if self.cache.enabled and sum(map(len, texts)) <= CACHED_TEXT
            else []
        )
        cached = self.cache.get_all(keys)
        if cached is not None:  # every candidate scored before: no pre stage, no batch
            self.sink.cache(model.name, len(cached), 0, self.cache.nbytes)
            stored = sum(c.from_store for c in cached)
            self.sink.store_lookups(model.name, stored, len(cached) - stored if model.has_store else 0)
            own, invalid = replace_invalid(
                model.name, req.ids, np.array([c.score for c in cached], np.float32), self.sink, self._logged_invalid
            )
            flags = [(c.truncated or x, c.from_store, c.windows) for c, x in zip(cached, cut, strict=True)]
            return answer(model, req, own, invalid, flags, queue_s=0.0, inference_s=0.0, started=started)
        self.admission.check(deadline)  # under overload, refuse before the per-candidate estimate
        pairs_estimate, encodes = model.prepare.estimate(req.ids, texts, aggregate)  # windows to score, to encode
        stake = self.admission.admit(model.costs.estimate(pairs_estimate, encodes), encodes, deadline)
        watch = Watch(deadline)
        scored = answered = False
        try:
            pre_start = time.monotonic()
            query, passages = await self._pre_stage(model, req, texts, aggregate, watch, stake)
            pre_seconds = time.monotonic() - pre_start
            watch.check()
            hits = sum(passages.from_store)
            self.sink.store_lookups(model.name, hits, len(req.ids) - hits if model.has_store else 0)
            now = time.monotonic()
            pairs = [Pair(query, p, now) for p in passages.items]
            self.sink.queue_depth(model.name, model.batcher.queue_depth + len(pairs))
            scored = True  # from here on the batcher counts what it drops
            results = await model.batcher.submit(pairs, deadline=deadline)
            answered = True
        except (DeadlineError, asyncio.CancelledError):
            watch.cancelled = True
            if not scored:
                self.sink.dropped(model.name, len(req.ids), "pre")
            raise
        except StoreDamagedError as exc:
            with contextlib.suppress(Exception):  # a failing sink must not hide the DATA_LOSS
                self.sink.store_damaged(model.name, str(exc))
            raise
        finally:
            # an abandoned pre stage keeps only its running unit in the estimate of the work ahead
            self.admission.done(
                stake,
                answered,
                running_s=model.costs.encode_s * min(stake.encodes, model.prepare.budget.max_batch_size),
                late=not answered and deadline is not None and time.monotonic() >= deadline,
            )
            self.sink.queue_depth(model.name, model.batcher.queue_depth)  # on every path, errors too
        scores = passages.aggregate(np.array([r.score for r in results], dtype=np.float32), aggregate)
        own, invalid = replace_invalid(model.name, req.ids, scores, self.sink, self._logged_invalid)
        windows = passages.windows.tolist()
        flags = [(t or c, s, w) for t, s, w, c in zip(passages.truncated, passages.from_store, windows, cut, strict=True)]
        if keys:  # not a candidate whose windows the request's limit cut (alone it would have more)
            whole = passages.windows.sum() < model.prepare.windowing(aggregate).per_request
            kept = [
                (k, Cached(float(s), t, f, w))
                for k, s, t, f, w in zip(keys, scores, passages.truncated, passages.from_store, windows, strict=True)
                if whole or not t
            ]
            self.cache.put_all([k for k, _ in kept], [v for _, v in kept])
            self.sink.cache(model.name, 0, len(keys), self.cache.nbytes)
        batches = {r.batch_started: r.batch_seconds for r in results}
        queue_s = max((r.waited for r in results), default=0.0)
        return answer(
            model, req, own, invalid, flags, queue_s=queue_s, inference_s=pre_seconds + sum(batches.values()), started=started
        )

    async def _pre_stage(
        self, model: ServedModel, req: RerankInput, texts: Sequence[str], aggregate: str, watch: Watch, stake: Stake
    ) -> tuple[QueryItem, Passages]:
        """The query on the query pool, the passages (encoded on the encode pool when they need it) in
        parallel; the request's stake in the pre-stage bounds is released when both have really ended."""
        loop = asyncio.get_running_loop()
        left = [2]

        def ended(_: Future[Any]) -> None:
            left[0] -= 1
            if left[0] == 0:
                self.admission.prepared(stake)

        def encode() -> Passages:
            watch.check()
            began = time.monotonic()
            passages = model.prepare.passages(req.ids, texts, aggregate, watch.check, req.query)
            if passages.encoded:
                model.costs.observe_encodes(passages.encoded, time.monotonic() - began)
            return passages

        def query() -> QueryItem:
            watch.check()
            return model.prepare.query(req.query)

        q_future = self._on(self._query_pool, query, loop, ended)
        p_future = self._on(self._encode_pool if stake.encodes else self._query_pool, encode, loop, ended)
        try:
            return await asyncio.gather(asyncio.wrap_future(q_future), asyncio.wrap_future(p_future))
        except BaseException:
            watch.cancelled = True  # the other half stops at its next unit
            q_future.cancel()
            p_future.cancel()
            raise

    @staticmethod
    def _on(
        pool: ThreadPoolExecutor, fn: Callable[[], T], loop: asyncio.AbstractEventLoop, ended: Callable[[Future[Any]], None]
    ) -> Future[T]:
        future = pool.submit(fn)

        def report(f: Future[Any]) -> None:  # runs in the worker thread (or here when cancelled before it ran)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is waiting any more
                loop.call_soon_threadsafe(ended, f)

        future.add_done_callback(report)
        return future

    async def warm_up(self) -> None:
        """One request per model through :meth:`rerank` (every graph runs once), not counted in the stats.
        Raises what the request raises: a model that cannot answer is not ready."""
        sink, self.sink = self.sink, NullSink()
        cache, self.cache = self.cache, ScoreCache(0)  # every graph must run: no answer from the cache
        try:
            for model in self.models.values():
                model_sink, model.sink = model.sink, self.sink
                try:
                    await self.rerank(RerankInput(WARMUP[0], [""], [WARMUP[1]], model=model.name, fusion=FusionRule()))
                finally:
                    model.sink = model_sink
        finally:
            self.sink, self.cache = sink, cache

    async def close(self) -> None:
        for model in self.models.values():
            if model.build is not None:
                await asyncio.get_running_loop().run_in_executor(None, model.build.stop)
            await model.batcher.close()
        self._query_pool.shutdown(wait=False)
        self._encode_pool.shutdown(wait=False)
        self._core_pool.shutdown(wait=False)
