"""Runtime settings (frozen, validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reranker.errors import ConfigError


@dataclass(frozen=True)
class RuntimeConfig:
    """How ONNX Runtime runs a model (how work is batched is the engine's :class:`BatcherConfig`)."""

    provider: Literal["auto", "cpu", "cuda"] = "auto"
    """``cuda`` requires onnxruntime-gpu and a GPU (else an error); ``auto`` takes CUDA when it works
    and otherwise logs a warning and uses the CPU."""
    intra_op_threads: int = 0
    """Threads inside one operator; 0 lets ONNX Runtime use every core."""
    inter_op_threads: int = 1
    """Threads across independent operators."""

    def __post_init__(self) -> None:
        if self.provider not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"provider must be auto, cpu or cuda, got {self.provider!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigError(f"thread counts must be >= 0 (0 = ONNX Runtime's default), got intra_op_threads="
                              f"{self.intra_op_threads} and inter_op_threads={self.inter_op_threads}")
