"""What the engine is built from: model specs, request limits, the batching budget, runtime settings.

Frozen dataclasses validated on construction; the server's TOML file fills them
(:mod:`reranker.server.config`), tests and benchmarks build them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from reranker.engine.batcher import BatcherConfig
from reranker.errors import ConfigError
from reranker.fusion import FIRST_STAGES, FusionRule
from reranker.runtime.config import BACKENDS, RuntimeConfig

FIRST_STAGE_TIER = "first-stage"
"""The cascade tier that answers in the candidates' first-stage order (their first-stage scores when
every candidate has one, else the order they were sent in): no model, no wait."""


AGGREGATES = ("max", "first-max", "first")
"""How the window scores of a long candidate text become its score (:attr:`Limits.aggregate`)."""


@dataclass(frozen=True)
class Limits:
    """Per-model request limits (listed by ListModels)."""

    max_candidates: int = 1000
    """Candidates per request."""
    max_query_chars: int = 2000
    """Characters in a query (word pieces are limited by the model)."""
    max_passage_chars: int = 20000
    """Characters of one candidate text read (longer texts are cut to it and flagged truncated, never
    refused)."""
    window_tokens: int | None = None
    """Word pieces per window of a candidate text longer than the model's passage length (such a text
    is scored window by window and the windows' scores aggregated); None = the model's passage length."""
    window_stride: int | None = None
    """Word pieces from the start of one window to the next (at most ``window_tokens``: windows overlap
    or touch, never leave a gap); None = half a window."""
    max_windows_per_candidate: int = 16
    """Windows scored of one candidate; a longer text is cut after them and flagged truncated
    (1 = every text is cut at the model's passage length, no windows)."""
    max_windows_per_request: int = 1000
    """Windows scored in one request, one per candidate counted first; candidates beyond it (in request
    order) keep their first window only and are flagged truncated. Bounds a request's cost. Windows
    encoded from text (split models) count against the engine's ``max_pending_encodes`` (one request
    alone is always admitted)."""
    aggregate: str = "max"
    """How a candidate's window scores become its score: ``max`` (MaxP), ``first-max`` (mean of the
    first window's and the best window's) or ``first`` (the first window only: truncation);
    a request may choose another."""

    def __post_init__(self) -> None:
        for name in (
            "max_candidates",
            "max_query_chars",
            "max_passage_chars",
            "max_windows_per_candidate",
            "max_windows_per_request",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("window_tokens", "window_stride"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"{name} must be a whole number of word pieces >= 1 (leave it out for the model's default), got {value!r}"
                )
        if self.window_tokens is not None and self.window_stride is not None and self.window_stride > self.window_tokens:
            raise ConfigError(
                f"window_stride ({self.window_stride}) must be at most window_tokens ({self.window_tokens}): "
                "a larger stride would leave text between windows unread"
            )
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One served model."""

    name: str
    """Name clients use in RerankRequest.model."""
    artifact: str
    """ONNX artifact directory (from 'reranker export')."""
    store: str = ""
    """Passage store directory (from 'reranker index'); empty = candidates need text."""
    limits: Limits = field(default_factory=Limits)
    """Request limits."""
    backend: Literal["", "onnxruntime", "openvino", "auto"] = ""
    """The runtime backend of this model (``onnxruntime`` or ``openvino``); empty = the engine's
    ``RuntimeConfig.backend``. E.g. the BERT-cat teacher's static int8 graph on OpenVINO beside
    students from their stores on ONNX Runtime. ``auto``: the backend this CPU's row of
    :data:`reranker.machine.CROSS_ENCODER_SERVING` names for a cross-encoder exported at that row's
    precision (``reranker export --precision auto``), else ``onnxruntime``."""
    fusion: FusionRule = field(default_factory=FusionRule)
    """How the model's score is fused with the candidates' first-stage scores (``reranker.fusion``);
    a request may override it. Any rule but ``none`` needs a first-stage score on every candidate."""
    first_stage: str = ""
    """The kind of first stage this model is served behind (``bm25``, ``dense``, ``sparse``): its
    shipped fusion choice for that kind becomes the model's rule (``fusion`` may not be set as well)."""
    passages: str = ""
    """A data folder with ``passages.tsv(.gz)``, or such a file: candidates sent by id without text that
    the store does not hold are scored from their text here (a cross-encoder then takes ids too)."""
    build_store: bool = False
    """Build ``store`` from ``passages`` in the background when it is missing, damaged or made for
    another artifact: the model serves at once, candidates by id scored from their text until the
    store is ready, then from it (ListModels, /v1/models and /health say which)."""

    def __post_init__(self) -> None:
        if self.first_stage and (self.first_stage not in FIRST_STAGES or self.fusion.active):
            raise ConfigError(
                f"model {self.name}: first_stage must be one of {', '.join(FIRST_STAGES)} (got {self.first_stage!r}), "
                "without a fusion rule of its own (the model's shipped choice for that kind applies)"
            )
        if not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"model name {self.name!r} must be non-empty letters, digits, '-', '_' or '.'")
        if self.name == FIRST_STAGE_TIER:
            raise ConfigError(f"model name {FIRST_STAGE_TIER!r} is reserved for a cascade's first-stage tier")
        if self.build_store and not (self.store and self.passages):
            raise ConfigError(
                f"model {self.name!r}: build_store needs store (the directory to build) and passages (the texts to build it from)"
            )
        if self.backend and self.backend not in (*BACKENDS, "auto"):
            raise ConfigError(
                f"model {self.name!r}: backend must be one of {', '.join(BACKENDS)}, auto (or empty for the "
                f"[runtime] backend), got {self.backend!r}"
            )


@dataclass(frozen=True)
class CascadeSpec:
    """A deadline-aware cascade served under its own name: tiers from the most effective to the
    cheapest, each a served model's name or :data:`FIRST_STAGE_TIER`. A request naming the cascade is
    scored by the first tier estimated to answer before its deadline (all of them in turn without a
    deadline's pressure; a tier refused for capacity falls back to the next)."""

    name: str
    """Name requests use in RerankRequest.model."""
    tiers: tuple[str, ...]
    """Served model names, most effective first; :data:`FIRST_STAGE_TIER` may end the list."""
    reserve_ms: float = 20.0
    """Milliseconds kept before the deadline (plus ``reserve_share`` of the request's time): a model
    tier is chosen only when its estimated answer comes this much earlier; with a first-stage tier
    after it, a model tier still running at the deadline less this is abandoned and the first stage
    answers in time."""
    reserve_share: float = 0.05
    """Share of the request's time (arrival to deadline) kept before the deadline besides ``reserve_ms``:
    a busy event loop delays an answer by more when more requests are in flight."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", tuple(self.tiers))
        if not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"cascade name {self.name!r} must be non-empty letters, digits, '-', '_' or '.'")
        if not self.tiers or len(set(self.tiers)) != len(self.tiers):
            raise ConfigError(f"cascade {self.name}: tiers must be a non-empty list without repeats, got {list(self.tiers)}")
        if not self.models:
            raise ConfigError(f"cascade {self.name}: at least one tier must be a served model, got {list(self.tiers)}")
        if FIRST_STAGE_TIER in self.tiers[:-1]:
            raise ConfigError(
                f"cascade {self.name}: {FIRST_STAGE_TIER!r} can only be the last tier (it always answers at once, "
                f"so no tier after it is ever used), got {list(self.tiers)}"
            )
        if not (math.isfinite(self.reserve_ms) and 0 <= self.reserve_ms <= 60_000):
            raise ConfigError(f"cascade {self.name}: reserve_ms must be in [0, 60000], got {self.reserve_ms}")
        if not (math.isfinite(self.reserve_share) and 0 <= self.reserve_share < 1):
            raise ConfigError(f"cascade {self.name}: reserve_share must be in [0, 1), got {self.reserve_share}")

    @property
    def models(self) -> tuple[str, ...]:
        """The tiers that are served models."""
        return tuple(t for t in self.tiers if t != FIRST_STAGE_TIER)


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine builds itself from."""

    models: tuple[ModelSpec, ...]
    """Served models (at least one, unique names)."""
    default_model: str = ""
    """Model used when a request names none (default: the first)."""
    batching: BatcherConfig = field(default_factory=BatcherConfig)
    """The one batching budget (per model): pairs per graph run, padded tokens, wait, queue bound.
    Passages sent as text are encoded in batches of the same budget."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """ONNX Runtime settings (provider, threads)."""
    pre_workers: int = 2
    """Threads that prepare requests (tokenise, encode queries and passages sent as text)."""
    worker_nice: int = 5
    """Nice increment of the engine's worker threads: the pre stage, the batches and the ONNX Runtime
    threads they start, and background store builds (Linux; elsewhere ignored). The event-loop
    thread that admits, refuses and answers requests then runs ahead of the heavy work when the
    cores are saturated, so a refusal stays quick. The workers then also yield to other processes
    of the machine at normal priority: set 0 where the server shares its cores with such work and
    should not."""
    max_pending_requests: int = 64
    """Requests that may wait to be prepared; beyond it RESOURCE_EXHAUSTED at once."""
    max_pending_encodes: int = 400
    """Passages sent as text (to split models, ids not in the store) that may wait to be encoded;
    a request that would exceed it gets RESOURCE_EXHAUSTED at once (one request alone is admitted)."""
    max_queue_ms: float = 1000.0
    """Server-side bound on queue time: a request is refused at admission (RESOURCE_EXHAUSTED, at once)
    when the estimated work ahead of it exceeds this, or when that work and its own would not end
    before its deadline. The estimate is the admitted work not yet ended, from running per-pair and
    per-encode costs. 0 = no bound (requests wait, bounded only by the queue sizes)."""
    warmup: bool = True
    """Send one request per model through the request path before serving, so that the first
    client does not pay for initialisation."""
    verify_stores: bool = False
    """Check the sha256 of every file of every passage store at start (reads whole stores; the
    default checks sizes, the small files, the codec and, up to 256 MiB, the centroid ids)."""
    cache_mb: float = 64.0
    """Bound of the score cache in MiB (:mod:`reranker.engine.cache`): a request whose every candidate
    was scored before for the same query and model is answered from it; 0 = no cache."""
    cascades: tuple[CascadeSpec, ...] = ()
    """Deadline-aware cascades over the served models, each under its own name."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("the server needs at least one model ([[models]] with name and artifact)")
        if not (math.isfinite(self.cache_mb) and self.cache_mb >= 0):
            raise ConfigError(f"cache_mb must be a finite number >= 0 (0 = no score cache), got {self.cache_mb}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique, got {names}")
        object.__setattr__(self, "cascades", tuple(self.cascades))
        for c in self.cascades:
            unknown = [t for t in c.models if t not in names]
            if unknown:
                raise ConfigError(
                    f"cascade {c.name} names unknown tier(s) {unknown}; tiers are served models ({', '.join(names)}) "
                    f"or {FIRST_STAGE_TIER!r}"
                )
        taken = names + [c.name for c in self.cascades]
        if len(set(taken)) != len(taken):
            raise ConfigError(f"model and cascade names must be unique together, got {taken}")
        if self.default_model and self.default_model not in names:
            raise ConfigError(f"default_model {self.default_model!r} is not one of the models {names}")
        if not 0 <= self.worker_nice <= 19:
            raise ConfigError(f"worker_nice must be in [0, 19] (0 = the event loop's priority), got {self.worker_nice}")
        if min(self.pre_workers, self.max_pending_requests, self.max_pending_encodes) < 1:
            raise ConfigError(
                f"pre_workers, max_pending_requests and max_pending_encodes must be >= 1, got "
                f"{self.pre_workers}, {self.max_pending_requests} and {self.max_pending_encodes}"
            )
        if not 0 <= self.max_queue_ms <= 3_600_000:
            raise ConfigError(f"max_queue_ms must be in [0, 3600000] (0 = no bound), got {self.max_queue_ms}")

    @property
    def default(self) -> str:
        """The default model's name."""
        return self.default_model or self.models[0].name
