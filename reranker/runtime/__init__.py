"""ONNX Runtime execution: sessions with explicit providers, and one scorer per architecture.

Nothing here imports torch.
"""

from reranker.runtime.config import RuntimeConfig
from reranker.runtime.scorer import OnnxScorer, PassageItem, QueryItem, plan_batches

__all__ = ["OnnxScorer", "PassageItem", "QueryItem", "RuntimeConfig", "plan_batches"]
