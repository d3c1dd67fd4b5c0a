"""The HTTP API's request and response bodies, as the ecosystem's clients send and read them.

* Cohere v1 / v2 and Jina (``POST /v1/rerank``, ``POST /v2/rerank``): ``query``, ``documents``
  (strings or objects with ``text``), ``top_n``, ``return_documents``, ``max_tokens_per_doc``;
  answer ``id``, ``results[{index, relevance_score, document?}]``, ``meta``.
* Text Embeddings Inference (``POST /rerank``): ``query``, ``texts``, ``raw_scores``,
  ``return_text``, ``truncate``; answer ``[{index, score, text?}]``.
* Our extension, on the Cohere shape: a document may be ``{"id": "..."}`` (its state comes from the
  model's passage store) and carry ``first_stage_score``; a request may set ``fusion``; each result
  says ``id``, ``truncated``, ``source`` and ``model_score``, the answer its ``timing``.

Unknown fields are ignored, as the clients send fields of their own (``rank_fields``,
``priority``, ``truncation_direction``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Document(_Lenient):
    """A document by text, or (our extension) by passage id from the store; at least one of the two."""

    text: str | None = None
    id: str | None = Field(default=None, description="reranker extension: a passage id of the model's store")
    first_stage_score: float | None = Field(default=None, description="reranker extension: for fusion")


class Fusion(_Lenient):
    """reranker extension: the request's fusion rule (none, minmax, zscore, rrf) and the re-ranker's share."""

    rule: str | None = None
    weight: float | None = None


class CohereRerankRequest(_Lenient):
    """Cohere v1 / v2 and Jina ``/rerank`` request."""

    model: str | None = Field(default=None, description="served model name; empty or unknown to clients = the default")
    query: str
    documents: list[str | Document]
    top_n: int | None = Field(default=None, ge=0, description="return only the best N (0 or none = all)")
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(default=None, ge=1, description="accepted; the model's own length applies")
    fusion: Fusion | None = None
    first_stage: str | None = Field(
        default=None, description="reranker extension: bm25, dense or sparse: the model's shipped fusion choice for it"
    )
    min_relevance: float | None = Field(
        default=None, description="reranker extension: leave out results whose calibrated relevance is below this (0..1)"
    )
    tier: str | None = Field(default=None, description="reranker extension, for a cascade: the one tier that must score")
    no_fallback: bool = Field(default=False, description="reranker extension, for a cascade: only its first tier may score")
    aggregate: str | None = Field(
        default=None,
        description="reranker extension: how a text longer than the model reads is scored: max (its windows' best), "
        "first-max (mean of the first and the best window) or first (cut); none = the model's",
    )


class ResultDocument(BaseModel):
    text: str


class CohereResult(BaseModel):
    index: int
    relevance_score: float = Field(
        description="the model's score (higher is more relevant); for a calibrated model without fusion, P(relevant)"
    )
    relevance: float | None = Field(default=None, description="reranker extension: P(relevant) by the model's calibration")
    document: ResultDocument | None = None
    id: str | None = Field(default=None, description="reranker extension: the document's id, when it had one")
    model_score: float | None = Field(default=None, description="reranker extension: the score before fusion")
    truncated: bool = Field(default=False, description="reranker extension: the passage was cut")
    source: Literal["store", "text"] = Field(default="text", description="reranker extension: where its state came from")
    invalid_score: bool = Field(default=False, description="reranker extension: the model's score was NaN or infinite")
    windows: int = Field(default=1, description="reranker extension: windows of the text scored (their aggregate)")


class BilledUnits(BaseModel):
    search_units: int = 1


class ApiVersion(BaseModel):
    version: str


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits = Field(default_factory=BilledUnits)


class Timing(BaseModel):
    queue_ms: float
    inference_ms: float
    total_ms: float


class Usage(BaseModel):
    total_tokens: int = 0


class CohereRerankResponse(BaseModel):
    id: str
    model: str
    results: list[CohereResult]
    below_min_relevance: int = Field(default=0, description="reranker extension: results left out under min_relevance")
    meta: Meta
    usage: Usage = Field(default_factory=Usage, description="Jina's field (tokens are not counted: 0)")
    timing: Timing | None = Field(default=None, description="reranker extension")
    scored_by: str = Field(default="", description="reranker extension: the model (a cascade's tier) or first-stage")
    reason: str = Field(default="", description="reranker extension: why a cascade's answer came from that tier")


class TeiRerankRequest(_Lenient):
    """Text Embeddings Inference ``/rerank`` request."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True
    model: str | None = Field(default=None, description="reranker extension: served model name")


class TeiResult(BaseModel):
    index: int
    score: float = Field(description="sigmoid of the model's score, or the score itself with raw_scores")
    text: str | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "reranker"
    arch: str
    precision: str
    max_candidates: int
    max_passage_tokens: int
    store_passages: int
    is_default: bool
    first_stages: list[str] = Field(default_factory=list, description="first-stage kinds with a shipped fusion choice")
    window_tokens: int = Field(description="word pieces per window of a longer text")
    window_stride: int = Field(description="word pieces from one window's start to the next")
    max_windows_per_candidate: int
    max_windows_per_request: int
    aggregate: str = Field(description="how window scores become a text's score: max, first-max or first")
    store_status: str = Field(description="ready, building (ids scored from their text meanwhile), failed or none")
    store_progress: float = Field(description="share of the passages a building store has encoded")


class CascadeCard(BaseModel):
    name: str
    tiers: list[str] = Field(description="served models, most effective first; first-stage may end the list")
    reserve_ms: float = Field(description="kept before the deadline, besides reserve_share of the request's time")
    reserve_share: float


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]
    cascades: list[CascadeCard] = Field(default_factory=list, description="reranker extension: deadline-aware cascades")


class ErrorBody(BaseModel):
    message: str = Field(description="what was wrong and what is allowed")
    code: str = Field(description="the gRPC status the same error gets there, e.g. INVALID_ARGUMENT")
