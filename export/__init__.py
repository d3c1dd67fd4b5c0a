"""Export of trained checkpoints to ONNX artifacts (needs the ``train`` extra: torch, onnx)."""
