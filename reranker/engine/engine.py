"""The engine: model resolution, validation, the pre stage, cross-request batching and top_k.

Transport-agnostic: the gRPC servicer turns messages into :class:`RerankInput` and maps the
project's exceptions to status codes. Statistics go to a :class:`StatsSink` (the metrics module
implements it); the engine never touches Prometheus. :meth:`Engine.rerank` is the one request
path: serving, warm-up and in-process callers (:class:`reranker.engine.LocalEngine`) all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from reranker.engine.admission import Admission, Stake, Watch
from reranker.engine.config import EngineConfig
from reranker.engine.loader import open_model
from reranker.engine.messages import RerankInput, RerankOutput, Scored
from reranker.engine.prepare import PassageItem, QueryItem
from reranker.engine.served import ModelDescription, NullSink, Pair, ServedModel, StatsSink
from reranker.errors import ConfigError, DeadlineError, InvalidInputError, NotFoundError, StoreDamagedError, quoted, some
from reranker.fusion import FusionRule, rule_for_first_stage

log = logging.getLogger(__name__)
T = TypeVar("T")

WARMUP = ("warm up query", "a short passage to warm up every graph")


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
        self._query_pool = ThreadPoolExecutor(max_workers=cfg.pre_workers, thread_name_prefix="reranker-query")
        self._encode_pool = ThreadPoolExecutor(max_workers=cfg.pre_workers, thread_name_prefix="reranker-encode")
        self.admission = Admission(cfg.max_pending_requests, cfg.max_pending_encodes, cfg.max_queue_ms / 1000.0)
        self.models = {m.name: m for m in models}
        self.default = cfg.default
        self.sink = sink if sink is not None else NullSink()
        self._logged_invalid: set[tuple[str, str]] = set()

    @classmethod
    def from_config(cls, cfg: EngineConfig, sink: StatsSink | None = None) -> Engine:
        """Open every model of ``cfg`` (artifact checksums verified, stores checked against them)."""
        sink = sink if sink is not None else NullSink()
        return cls([open_model(spec, cfg, sink) for spec in cfg.models], cfg, sink)

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
                f"unknown model {quoted(name)}; this server serves {', '.join(sorted(self.models))} "
                f"(empty = the default, {self.default})"
            )
        return model

    def validate(self, req: RerankInput, model: ServedModel) -> None:
        """Refuse what no cutting can serve; over-long candidate texts are cut, never refused."""
        limits = model.limits
        if not req.query.strip():
            raise InvalidInputError("the query is empty; send the text to rank the candidates against")
        if len(req.query) > limits.max_query_chars:
            raise InvalidInputError(f"the query has {len(req.query)} characters; at most {limits.max_query_chars} are allowed")
        if not req.ids:
            raise InvalidInputError(
                "no candidates: send at least one candidate (an id, and text unless the id is in the model's passage store)"
            )
        if len(req.ids) > limits.max_candidates:
            raise InvalidInputError(
                f"{len(req.ids)} candidates sent; model {model.name} takes at most "
                f"{limits.max_candidates} per request (split larger lists)"
            )
        if req.top_k < 0:
            raise InvalidInputError(f"top_k must be >= 0 (0 = all), got {req.top_k}")
        self.fusion_for(req, model)

    @staticmethod
    def fusion_for(req: RerankInput, model: ServedModel) -> FusionRule:
        """The request's rule (its override, else the model's); refuses a fusing request whose candidates
        do not all carry a finite first-stage score."""
        rule = req.fusion
        if rule is None and req.first_stage_kind:
            try:
                rule = rule_for_first_stage(model.first_stage_rules, req.first_stage_kind, model.name)
            except ConfigError as exc:
                raise InvalidInputError(str(exc)) from None
        rule = rule if rule is not None else model.fusion
        if not rule.active:
            return rule
        sent = [s for s in req.first_stage if s is not None]
        if len(req.first_stage) != len(req.ids) or len(sent) != len(req.ids):
            raise InvalidInputError(
                f"model {model.name} fuses its score with the first stage ({rule.describe()}): send first_stage_score "
                f"on every candidate ({len(sent)} of {len(req.ids)} have one), or set fusion.rule 'none' in the "
                "request to rank by the model's score alone"
            )
        if not all(math.isfinite(s) for s in sent):
            raise InvalidInputError("first_stage_score must be a finite number on every candidate (no NaN or infinity)")
        return rule

    async def rerank(self, req: RerankInput, *, deadline: float | None = None) -> RerankOutput:
        """Score every candidate; ``deadline`` is a ``time.monotonic()`` instant (None = none).

        Raises InvalidInputError, NotFoundError, CapacityError or DeadlineError (see reranker.errors).
        Abandoned work (deadline passed, or the calling task cancelled) stops at its next unit.
        """
        started = time.monotonic()
        model = self.resolve(req.model)
        self.validate(req, model)
        cap = model.limits.max_passage_chars
        cut = [len(t) > cap for t in req.texts]
        texts = [t[:cap] for t in req.texts] if any(cut) else list(req.texts)
        encodes = model.prepare.needs_encoding(req.ids, texts)  # passages the pre stage must encode
        stake = self.admission.admit(model.costs.estimate(len(req.ids), encodes), encodes, deadline)
        watch = Watch(deadline)
        scored = answered = False
        try:
            pre_start = time.monotonic()
            query, passages = await self._pre_stage(model, req, texts, watch, stake)
            pre_seconds = time.monotonic() - pre_start
            watch.check()
            hits = sum(p.from_store for p in passages)
            self.sink.store_lookups(model.name, hits, len(passages) - hits if model.has_store else 0)
            now = time.monotonic()
            pairs = [Pair(query, p, now) for p in passages]
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
                stake, answered, running_s=model.costs.encode_s * min(stake.encodes, model.prepare.budget.max_batch_size)
            )
            self.sink.queue_depth(model.name, model.batcher.queue_depth)  # on every path, errors too
        own, invalid = self._finite(model.name, req.ids, np.array([r.score for r in results], dtype=np.float32))
        rule = self.fusion_for(req, model)
        scores = (
            np.array(rule.fuse(own.tolist(), [float(s) for s in req.first_stage if s is not None]), dtype=np.float64)
            if rule.active
            else own
        )
        queue_s = max((r.waited for r in results), default=0.0)
        batches = {r.batch_started: r.batch_seconds for r in results}
        order = np.lexsort((-scores, invalid))  # by score, invalid candidates last (stable on ties)
        if req.top_k:
            order = order[: req.top_k]
        out = [
            Scored(
                req.ids[i],
                int(i),
                float(scores[i]),
                passages[i].truncated or cut[i],
                passages[i].from_store,
                float(own[i]),
                bool(invalid[i]),
            )
            for i in order.tolist()
        ]
        total = time.monotonic() - started
        truncated = sum(p.truncated or c for p, c in zip(passages, cut, strict=True))
        return RerankOutput(
            model.name,
            out,
            queue_ms=queue_s * 1000.0,
            inference_ms=(pre_seconds + sum(batches.values())) * 1000.0,
            total_ms=total * 1000.0,
            stats={"candidates": len(passages), "truncated": truncated, "invalid": int(invalid.sum())},
        )

    def _finite(self, model: str, ids: Sequence[str], own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's scores with NaN / infinity replaced by the lowest finite score (fusion sees only
        finite scores that leave the others' normalisation as it would be without the candidate; the
        caller ranks the replaced ones last), and the mask of those replaced; counted, and logged once
        per passage id (ids kept as at most 100 characters, up to 100,000 of them)."""
        invalid = ~np.isfinite(own)
        if invalid.any():
            finite = own[~invalid]
            own = own.copy()
            own[invalid] = float(finite.min()) if finite.size else 0.0
            bad = [ids[i] for i in np.flatnonzero(invalid).tolist()]
            self.sink.invalid_scores(model, len(bad))
            new = [pid for pid in bad if (model, pid[:100]) not in self._logged_invalid]
            if new and len(self._logged_invalid) < 100_000:
                self._logged_invalid.update((model, pid[:100]) for pid in new)
                log.warning(
                    "model %s scored %d candidate(s) NaN or infinite (damaged stored state?): %s", model, len(new), some(new)
                )
            elif new:
                log.warning("model %s scored %d more candidate(s) NaN or infinite", model, len(new))
        return own, invalid

    async def _pre_stage(
        self, model: ServedModel, req: RerankInput, texts: Sequence[str], watch: Watch, stake: Stake
    ) -> tuple[QueryItem, list[PassageItem]]:
        """The query on the query pool, the passages (encoded on the encode pool when they need it) in
        parallel; the request's stake in the pre-stage bounds is released when both have really ended."""
        loop = asyncio.get_running_loop()
        left = [2]

        def ended(_: Future[Any]) -> None:
            left[0] -= 1
            if left[0] == 0:
                self.admission.prepared(stake)

        def encode() -> list[PassageItem]:
            watch.check()
            began = time.monotonic()
            items = model.prepare.passages(req.ids, texts, watch.check)
            if stake.encodes:
                model.costs.observe_encodes(stake.encodes, time.monotonic() - began)
            return items

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
        try:
            for model in self.models.values():
                model_sink, model.sink = model.sink, self.sink
                try:
                    await self.rerank(RerankInput(WARMUP[0], [""], [WARMUP[1]], model=model.name, fusion=FusionRule()))
                finally:
                    model.sink = model_sink
        finally:
            self.sink = sink

    async def close(self) -> None:
        for model in self.models.values():
            await model.batcher.close()
        self._query_pool.shutdown(wait=False)
        self._encode_pool.shutdown(wait=False)
