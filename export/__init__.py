"""Export of trained checkpoints to ONNX artifacts (needs the ``train`` extra: torch, onnx).

The folder is ``export/`` in the repository and installs as ``reranker_export``.
"""
