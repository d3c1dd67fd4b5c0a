"""Study: ONNX Runtime intra-op thread spinning on or off."""
