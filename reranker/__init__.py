"""reranker: an inference-optimised passage re-ranker distilled with Margin-MSE."""

__version__ = "0.1.0"
