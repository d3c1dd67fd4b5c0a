from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Candidate(_message.Message):
    __slots__ = ("id", "text", "first_stage_score")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FIRST_STAGE_SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    first_stage_score: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., first_stage_score: _Optional[float] = ...) -> None: ...

class Fusion(_message.Message):
    __slots__ = ("rule", "weight")
    RULE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    weight: float
    def __init__(self, rule: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("query", "candidates", "model", "top_k", "fusion", "first_stage", "min_relevance", "aggregate", "tier", "no_fallback")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_STAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    NO_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    query: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model: str
    top_k: int
    fusion: Fusion
    first_stage: str
    min_relevance: float
    aggregate: str
    tier: str
    no_fallback: bool
    def __init__(self, query: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model: _Optional[str] = ..., top_k: _Optional[int] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ..., first_stage: _Optional[str] = ..., min_relevance: _Optional[float] = ..., aggregate: _Optional[str] = ..., tier: _Optional[str] = ..., no_fallback: _Optional[bool] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("id", "index", "score", "truncated", "source", "model_score", "invalid_score", "relevance", "windows")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[Result.Source]
        SOURCE_STORE: _ClassVar[Result.Source]
        SOURCE_TEXT: _ClassVar[Result.Source]
    SOURCE_UNSPECIFIED: Result.Source
    SOURCE_STORE: Result.Source
    SOURCE_TEXT: Result.Source
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_SCORE_FIELD_NUMBER: _ClassVar[int]
    INVALID_SCORE_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    score: float
    truncated: bool
    source: Result.Source
    model_score: float
    invalid_score: bool
    relevance: float
    windows: int
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., score: _Optional[float] = ..., truncated: _Optional[bool] = ..., source: _Optional[_Union[Result.Source, str]] = ..., model_score: _Optional[float] = ..., invalid_score: _Optional[bool] = ..., relevance: _Optional[float] = ..., windows: _Optional[int] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("queue_ms", "inference_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    inference_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("results", "model", "timing", "below_min_relevance", "scored_by", "reason")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    BELOW_MIN_RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    SCORED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    model: str
    timing: Timing
    below_min_relevance: int
    scored_by: str
    reason: str
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., model: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., below_min_relevance: _Optional[int] = ..., scored_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "arch", "precision", "provider", "store_passages", "store_bytes", "max_candidates", "max_query_tokens", "max_passage_tokens", "is_default", "score_kind", "max_query_chars", "max_passage_chars", "max_queued_pairs", "max_queue_ms", "fusion", "first_stages", "calibrated", "window_tokens", "window_stride", "max_windows_per_candidate", "max_windows_per_request", "aggregate", "store_status", "store_progress", "collection_passages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STORE_PASSAGES_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_PASSAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SCORE_KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_PASSAGE_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_STAGES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STRIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOWS_PER_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOWS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    STORE_STATUS_FIELD_NUMBER: _ClassVar[int]
    STORE_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_PASSAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    arch: str
    precision: str
    provider: str
    store_passages: int
    store_bytes: int
    max_candidates: int
    max_query_tokens: int
    max_passage_tokens: int
    is_default: bool
    score_kind: str
    max_query_chars: int
    max_passage_chars: int
    max_queued_pairs: int
    max_queue_ms: int
    fusion: Fusion
    first_stages: _containers.RepeatedScalarFieldContainer[str]
    calibrated: bool
    window_tokens: int
    window_stride: int
    max_windows_per_candidate: int
    max_windows_per_request: int
    aggregate: str
    store_status: str
    store_progress: float
    collection_passages: int
    def __init__(self, name: _Optional[str] = ..., arch: _Optional[str] = ..., precision: _Optional[str] = ..., provider: _Optional[str] = ..., store_passages: _Optional[int] = ..., store_bytes: _Optional[int] = ..., max_candidates: _Optional[int] = ..., max_query_tokens: _Optional[int] = ..., max_passage_tokens: _Optional[int] = ..., is_default: _Optional[bool] = ..., score_kind: _Optional[str] = ..., max_query_chars: _Optional[int] = ..., max_passage_chars: _Optional[int] = ..., max_queued_pairs: _Optional[int] = ..., max_queue_ms: _Optional[int] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ..., first_stages: _Optional[_Iterable[str]] = ..., calibrated: _Optional[bool] = ..., window_tokens: _Optional[int] = ..., window_stride: _Optional[int] = ..., max_windows_per_candidate: _Optional[int] = ..., max_windows_per_request: _Optional[int] = ..., aggregate: _Optional[str] = ..., store_status: _Optional[str] = ..., store_progress: _Optional[float] = ..., collection_passages: _Optional[int] = ...) -> None: ...

class CascadeInfo(_message.Message):
    __slots__ = ("name", "tiers", "reserve_ms", "reserve_share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_MS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tiers: _containers.RepeatedScalarFieldContainer[str]
    reserve_ms: int
    reserve_share: float
    def __init__(self, name: _Optional[str] = ..., tiers: _Optional[_Iterable[str]] = ..., reserve_ms: _Optional[int] = ..., reserve_share: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model", "max_message_bytes", "max_pending_requests", "max_pending_encodes", "cascades")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_ENCODES_FIELD_NUMBER: _ClassVar[int]
    CASCADES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    max_message_bytes: int
    max_pending_requests: int
    max_pending_encodes: int
    cascades: _containers.RepeatedCompositeFieldContainer[CascadeInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_pending_requests: _Optional[int] = ..., max_pending_encodes: _Optional[int] = ..., cascades: _Optional[_Iterable[_Union[CascadeInfo, _Mapping]]] = ...) -> None: ...
