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
    allow_spinning: bool = False
    """Let ONNX Runtime's intra-op threads spin-wait for more work after each operator. Every graph
    session has its own pool, so on a few shared cores the spinning threads of the graph that just
    ran take the CPU from the next one (query encoder, then scorer) and from other processes; off by
    default (a ColBERT request from the store on 2 loaded cores: see README, Latency over gRPC)."""

    def __post_init__(self) -> None:
        if self.provider not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"provider must be auto, cpu or cuda, got {self.provider!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigError(f"thread counts must be >= 0 (0 = ONNX Runtime's default), got intra_op_threads="
                              f"{self.intra_op_threads} and inter_op_threads={self.inter_op_threads}")
