"""The engine: validation, store lookups, cross-request dynamic batching and top_k (no transport).

Its public face is this module: the server builds an :class:`Engine` from an
:class:`EngineConfig`, sends :class:`RerankInput` and reads :class:`ModelDescription`.
"""

from reranker.engine.batcher import Batcher, BatcherConfig, BatchStats
from reranker.engine.config import FIRST_STAGE_TIER, CascadeSpec, EngineConfig, Limits, ModelSpec
from reranker.engine.engine import Engine
from reranker.engine.loader import passage_encoder
from reranker.engine.local import LocalEngine
from reranker.engine.messages import RerankInput, RerankOutput, Scored
from reranker.engine.served import ModelDescription, NullSink, ServedModel, StatsSink
from reranker.fusion import FusionRule
from reranker.runtime.config import RuntimeConfig

__all__ = [
    "FIRST_STAGE_TIER",
    "BatchStats",
    "Batcher",
    "BatcherConfig",
    "CascadeSpec",
    "Engine",
    "EngineConfig",
    "FusionRule",
    "Limits",
    "LocalEngine",
    "ModelDescription",
    "ModelSpec",
    "NullSink",
    "RerankInput",
    "RerankOutput",
    "RuntimeConfig",
    "Scored",
    "ServedModel",
    "StatsSink",
    "passage_encoder",
]
