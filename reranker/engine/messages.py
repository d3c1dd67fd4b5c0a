"""What a request to the engine holds and what it answers (transport-agnostic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reranker.fusion import FusionRule


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
    first_stage: Sequence[float | None] = ()
    """Empty, or one first-stage score per id (None: not sent); fused by the model's rule."""
    fusion: FusionRule | None = None
    """Overrides the model's fusion rule for this request (None = the model's)."""
    first_stage_kind: str = ""
    """The kind of first stage the candidates come from (``bm25``, ``dense``, ``sparse``): the model's
    shipped fusion choice for it applies, unless ``fusion`` overrides it; empty = the model's rule."""
    min_relevance: float | None = None
    """Drop results whose calibrated relevance is below this (in [0, 1]; the model needs a calibration)."""
    aggregate: str = ""
    """How the windows of a text longer than the model's passage length make its score: ``max``,
    ``first-max`` or ``first`` (truncation); empty = the model's (:attr:`Limits.aggregate`)."""
    tier: str = ""
    """For a cascade: the one tier that must score (no other is tried); empty = the cascade chooses."""
    no_fallback: bool = False
    """For a cascade: only its first tier may score (refused or late otherwise, as a model request)."""


@dataclass(frozen=True)
class Scored:
    id: str
    index: int
    """Position of the candidate in the request."""
    score: float
    """The fused score when a fusion rule applies, else the model's."""
    truncated: bool
    """The text was cut (to the model's passage length or to max_passage_chars)."""
    from_store: bool
    """The state came from the passage store by id (a text sent with it was not used)."""
    model_score: float = 0.0
    """The model's own score (equal to ``score`` without fusion)."""
    invalid: bool = False
    """The model's score was NaN or infinite (a damaged stored state, or a model fault): it was replaced
    by the lowest finite score of the request (what fusion sees) and the candidate ranks last."""
    relevance: float | None = None
    """P(relevant) of the model's own score by the model's calibration (None: the model has none)."""
    windows: int = 1
    """Windows of the candidate's text that were scored (its model score aggregates theirs)."""


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
    """``candidates``, ``truncated``, ``invalid``, ``below_min_relevance`` and ``windows`` counts."""
    scored_by: str = ""
    """The served model that scored, or ``first-stage`` (a cascade's order without a model)."""
    reason: str = ""
    """Why a cascade's answer came from that tier (empty for a model request)."""
