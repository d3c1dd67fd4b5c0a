"""Runtime settings (frozen, validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reranker.errors import ConfigError


@dataclass(frozen=True)
class RuntimeConfig:
    """How ONNX Runtime runs a model."""

    provider: Literal["auto", "cpu", "cuda"] = "auto"
    """``cuda`` requires onnxruntime-gpu and a GPU (else an error); ``auto`` takes CUDA when it works
    and otherwise logs a warning and uses the CPU."""
    intra_op_threads: int = 0
    """Threads inside one operator; 0 lets ONNX Runtime use every core."""
    inter_op_threads: int = 1
    """Threads across independent operators."""
    max_batch_pairs: int = 16
    """At most this many (query, passage) pairs in one graph run (CPU-tuned: on 2 cores a 6-layer
    cross-encoder ran 1.9x faster in batches of 16 than of 128; raise it on a GPU)."""
    max_batch_tokens: int = 4096
    """At most this many padded passage tokens (pairs x longest passage) in one graph run."""
    warmup: bool = True
    """Run every graph once at load so the first request does not pay for initialisation."""

    def __post_init__(self) -> None:
        if self.provider not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"provider must be auto, cpu or cuda, got {self.provider!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigError("thread counts must be >= 0 (0 = ONNX Runtime's default)")
        if self.max_batch_pairs < 1 or self.max_batch_tokens < 1:
            raise ConfigError(f"max_batch_pairs and max_batch_tokens must be >= 1, got "
                              f"{self.max_batch_pairs} and {self.max_batch_tokens}")
