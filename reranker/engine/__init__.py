"""The engine: validation, store lookups, cross-request dynamic batching and top_k (no transport)."""

from reranker.engine.batcher import Batcher, BatcherConfig, BatchStats
from reranker.engine.engine import Engine, Limits, RerankInput, RerankOutput, Scored, ServedModel, StatsSink

__all__ = ["BatchStats", "Batcher", "BatcherConfig", "Engine", "Limits", "RerankInput", "RerankOutput", "Scored",
           "ServedModel", "StatsSink"]
