"""Graph execution (arrays in, arrays out): ONNX Runtime sessions with explicit providers, or OpenVINO
(``RuntimeConfig.backend``), and one scorer per artifact. Nothing here imports torch.
"""

from reranker.runtime.config import RuntimeConfig
from reranker.runtime.scorer import OnnxScorer

__all__ = ["OnnxScorer", "RuntimeConfig"]
