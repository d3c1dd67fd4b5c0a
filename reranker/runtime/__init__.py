"""ONNX Runtime execution: sessions with explicit providers and one scorer per artifact
(arrays in, arrays out). Nothing here imports torch.
"""

from reranker.runtime.config import RuntimeConfig
from reranker.runtime.scorer import OnnxScorer

__all__ = ["OnnxScorer", "RuntimeConfig"]
