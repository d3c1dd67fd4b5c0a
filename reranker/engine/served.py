"""One served model: its pre stage, its core stage behind a batcher, its limits and a frozen
description of it (what ListModels shows; the transport maps it to its own messages)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from reranker.calibration import Calibration
from reranker.engine.admission import UnitCosts
from reranker.engine.batcher import Batcher, BatcherConfig, BatchStats
from reranker.engine.building import StoreBuild
from reranker.engine.config import Limits
from reranker.engine.prepare import PassageItem, Prepare, QueryItem
from reranker.fusion import FusionRule
from reranker.runtime.maxsim import best_sum, end_to_end
from reranker.store import PassageStore

log = logging.getLogger(__name__)


class StatsSink(Protocol):
    """Receives the engine's statistics (see reranker.server.metrics); every method may do nothing."""

    def batch(self, model: str, stats: BatchStats) -> None:
        return None

    def store_lookups(self, model: str, hits: int, misses: int) -> None:
        return None

    def queue_depth(self, model: str, depth: int) -> None:
        return None

    def dropped(self, model: str, items: int, stage: str) -> None:
        """``items`` pairs of abandoned requests not computed, at ``stage`` (admission, pre, batch)."""
        return None

    def invalid_scores(self, model: str, items: int) -> None:
        """``items`` scores came out NaN or infinite and were replaced (ranked last)."""
        return None

    def store_damaged(self, model: str, message: str) -> None:
        """A lookup found the model's passage store damaged (``message`` names the passages)."""
        return None

    def cache(self, model: str, hits: int, misses: int, nbytes: int) -> None:
        """``hits`` candidates answered from the score cache, ``misses`` scored; it holds ``nbytes``."""
        return None

    def cascade(self, cascade: str, tier: str) -> None:
        """A request to ``cascade`` was answered by ``tier`` (a model, or ``first-stage``)."""
        return None


class NullSink(StatsSink):
    """Discards every statistic (the protocol's methods do nothing)."""


@dataclass(frozen=True)
class ModelDescription:
    """What a client may know about a served model."""

    name: str
    """The name requests use."""
    arch: str
    """Architecture (``reranker.arch``)."""
    precision: str
    """The artifact's precision: fp32, fp16, int8, int8-static or int8-query."""
    provider: str
    """ONNX Runtime execution provider, e.g. ``CPUExecutionProvider``."""
    store_passages: int
    """Passages in the passage store (0: no store)."""
    store_bytes: int
    """Bytes of stored passage state."""
    max_candidates: int
    """Candidates one request may send."""
    max_query_tokens: int
    """Word pieces a query may have (queries are never truncated)."""
    max_passage_tokens: int
    """Word pieces of a passage the model reads at once (longer texts are scored in windows)."""
    score_kind: str
    """What the score is."""
    max_query_chars: int
    """Characters a query may have (longer ones are refused)."""
    max_passage_chars: int
    """Candidate texts are cut to this many characters (and flagged truncated)."""
    max_queued_pairs: int
    """Pairs that may wait for a batch (beyond it a request is refused)."""
    fusion: FusionRule = field(default_factory=FusionRule)
    """The model's fusion with first-stage scores (requests may override it)."""
    first_stages: tuple[str, ...] = ()
    """First-stage kinds the model ships a fusion choice for (a request may name one)."""
    calibrated: bool = False
    """Results carry a calibrated relevance (requests may set min_relevance)."""
    window_tokens: int = 0
    """Word pieces per window of a candidate text longer than ``max_passage_tokens``."""
    window_stride: int = 0
    """Word pieces from one window's start to the next."""
    max_windows_per_candidate: int = 1
    """Windows scored of one candidate (text after them is not read: truncated)."""
    max_windows_per_request: int = 1
    """Windows scored in one request (one per candidate counted first)."""
    aggregate: str = "max"
    """How window scores become the candidate's score (``max``, ``first-max``, ``first``)."""
    store_status: str = "none"
    """``ready``: stored candidates are scored from the passage store; ``building``: the store is being
    built (``store_progress``) and candidates by id are scored from their text; ``failed``: its build
    failed (candidates by id still scored from their text); ``none``: no store."""
    store_progress: float = 0.0
    """Share of the passages a building store has encoded (1.0 when ready)."""
    collection_passages: int = 0
    """Passages whose text the model looks up for candidates sent by id without text (0: none)."""


@dataclass(frozen=True)
class Pair:
    """One (query, passage) pair waiting for the core stage."""

    query: QueryItem
    passage: PassageItem
    enqueued: float
    """``time.monotonic()`` when it was queued."""


@dataclass(frozen=True)
class PairResult:
    """The core stage's answer for one pair."""

    score: float
    waited: float
    """Seconds from queueing to the start of its batch."""
    batch_started: float
    """``time.monotonic()`` at the start of its batch (identifies the batch)."""
    batch_seconds: float
    """Compute time of its batch."""


class ServedModel:
    """One model: pre stage, batched core stage, limits and description."""

    def __init__(
        self,
        name: str,
        prepare: Prepare,
        limits: Limits,
        batching: BatcherConfig,
        sink: StatsSink,
        *,
        precision: str,
        fusion: FusionRule | None = None,
        first_stage_rules: Mapping[str, FusionRule] | None = None,
        identity: str = "",
        calibration: Calibration | None = None,
    ) -> None:
        self.name, self.prepare, self.limits, self.sink = name, prepare, limits, sink
        self.fusion = fusion if fusion is not None else FusionRule()
        self.identity = identity
        self.calibration = calibration
        """Maps the model's score to P(relevant) (None: results carry no relevance)."""
        """The artifact's identity (its checksum): part of every score-cache key."""
        self.first_stage_rules = dict(first_stage_rules or {})
        """The model's shipped fusion choice per first-stage kind (its config's ``first_stage_fusion``)."""
        store = prepare.store
        self.description = ModelDescription(
            name=name,
            arch=prepare.arch.name,
            precision=precision,
            provider=prepare.scorer.provider,
            store_passages=len(store) if store is not None else 0,
            store_bytes=store.nbytes if store is not None else 0,
            max_candidates=limits.max_candidates,
            max_query_tokens=prepare.query_token_limit,
            max_passage_tokens=prepare.passage_token_limit,
            score_kind=prepare.arch.score_kind,
            max_query_chars=limits.max_query_chars,
            max_passage_chars=limits.max_passage_chars,
            max_queued_pairs=batching.max_queue,
            fusion=self.fusion,
            first_stages=tuple(sorted(self.first_stage_rules)),
            calibrated=calibration is not None,
            window_tokens=prepare.window_plan.size,
            window_stride=prepare.window_plan.stride,
            max_windows_per_candidate=prepare.window_plan.per_candidate,
            max_windows_per_request=prepare.window_plan.per_request,
            aggregate=limits.aggregate,
            store_status="ready" if store is not None else "none",
            store_progress=1.0 if store is not None else 0.0,
            collection_passages=len(prepare.collection),
        )
        self._logged_share = 0.0
        self.build: StoreBuild | None = None
        """The background build of the model's store, while there is one (:mod:`reranker.engine.building`)."""
        self.flat_maxsim = prepare.arch.maxsim and prepare.scorer.on_cpu
        """Batches are scored by numpy MaxSim instead of the padded scorer graph (see :meth:`run_batch`)."""
        if self.flat_maxsim:
            # No padding: a batch holds every candidate of a request, and runs at once (requests share no
            # matrix product, so waiting for another request's pairs would save nothing).
            pairs = max(batching.max_batch_size, batching.maxsim_batch_pairs)
            widest = prepare.passage_token_limit + prepare.query_token_limit  # the largest cost of a pair
            batching = dataclasses.replace(
                batching, max_batch_size=pairs, max_batch_cost=max(batching.max_batch_cost, pairs * widest), max_wait_s=0.0
            )
        self.costs = UnitCosts()
        """Running seconds per pair and per encoded passage (the admission estimate reads them)."""
        self.batcher: Batcher[Pair, PairResult] = Batcher(
            self.run_batch,
            batching,
            cost=lambda pair: pair.passage.length + pair.query.length,
            on_batch=self._on_batch,
            on_drop=self._on_drop,
        )

    def _on_drop(self, items: int) -> None:
        self.sink.dropped(self.name, items, "batch")
        self.sink.queue_depth(self.name, self.batcher.queue_depth)

    def _on_batch(self, stats: BatchStats) -> None:
        self.costs.observe_pairs(stats.size, stats.seconds)
        self.sink.batch(self.name, stats)

    def building(self, share: float) -> None:
        """The store being built has ``share`` of its passages encoded."""
        if share >= self._logged_share + 0.1 or (share == 1.0 and self._logged_share < 1.0):
            self._logged_share = share
            log.info("model %s: passage store %.0f%% built", self.name, 100 * share)
        self.description = dataclasses.replace(self.description, store_status="building", store_progress=share)

    def attach_store(self, store: PassageStore) -> None:
        """Score stored candidates from ``store`` from the next request on (a store built while serving)."""
        self.prepare.attach(store)
        self.description = dataclasses.replace(
            self.description, store_passages=len(store), store_bytes=store.nbytes, store_status="ready", store_progress=1.0
        )

    def build_failed(self, message: str) -> None:
        self.description = dataclasses.replace(self.description, store_status="failed")

    @property
    def has_store(self) -> bool:
        return self.prepare.store is not None

    def run_batch(self, pairs: Sequence[Pair]) -> list[PairResult]:
        """Core stage: pad one batch of pairs and run the scorer once (a MaxSim model on CPU: one
        matrix product per query over the unpadded states, :func:`reranker.runtime.maxsim.maxsim`)."""
        started = time.monotonic()
        if self.flat_maxsim:
            scores = self._maxsim(pairs)
        else:
            scores = self.prepare.scorer.score(*self.prepare.pad_pairs([p.query for p in pairs], [p.passage for p in pairs]))
        seconds = time.monotonic() - started
        return [PairResult(float(s), started - p.enqueued, started, seconds) for s, p in zip(scores, pairs, strict=True)]

    def _maxsim(self, pairs: Sequence[Pair]) -> np.ndarray:
        """MaxSim of each pair, the pairs of one query scored together (their states end to end)."""
        scores = np.empty(len(pairs), dtype=np.float32)
        by_query: dict[int, list[int]] = {}
        for i, pair in enumerate(pairs):
            by_query.setdefault(id(pair.query), []).append(i)
        for group in by_query.values():
            q = pairs[group[0]].query.data
            coded = [i for i in group if pairs[i].passage.coded]
            states = [i for i in group if not pairs[i].passage.coded]
            if coded:  # stored passages: dot products from the store's codes, without decoding
                rows = np.concatenate([pairs[i].passage.data for i in coded])
                lengths = np.fromiter((pairs[i].passage.length for i in coded), dtype=np.int64, count=len(coded))
                scores[coded] = best_sum(self.prepare.store.dots(q, rows), lengths)  # type: ignore[union-attr]
            if states:
                block, order = end_to_end([pairs[i].passage.data for i in states])
                picked = np.asarray(states)[order]
                lengths = np.fromiter((pairs[i].passage.length for i in picked), dtype=np.int64, count=len(picked))
                scores[picked] = self.prepare.scorer.maxsim(q, block, lengths)
        return scores
