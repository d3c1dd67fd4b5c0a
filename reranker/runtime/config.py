"""Runtime settings (frozen, validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reranker.errors import ConfigError

BACKENDS = ("onnxruntime", "openvino")
"""Engines that run an artifact's ONNX graphs."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How an artifact's ONNX graphs run (how work is batched is the engine's :class:`BatcherConfig`)."""

    provider: Literal["auto", "cpu", "cuda"] = "auto"
    """``cuda`` requires onnxruntime-gpu and a GPU (else an error); ``auto`` takes CUDA when it works
    and otherwise logs a warning and uses the CPU. OpenVINO runs on the CPU only (``cuda`` is refused)."""
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    """``onnxruntime`` (always installed with the ``serve`` extra) or ``openvino`` (the ``openvino``
    extra; CPU only). On this project's reference CPU, OpenVINO ran the BERT-cat teacher's static int8
    graph (``reranker export --precision int8-static``) 2.1x faster than ONNX Runtime ran the same
    file, and its fp32 graph in bf16 (see ``inference_precision``) 2.0x faster than ONNX Runtime in
    fp32 (README, "The teacher against its peers")."""
    inference_precision: Literal["auto", "f32", "bf16"] = "auto"
    """OpenVINO only: the precision of its floating-point arithmetic. ``auto`` is OpenVINO's own
    default (bf16 on CPUs with AVX512-BF16 or AMX, else f32); ``f32`` keeps fp32 scores to 1e-5."""
    intra_op_threads: int = 0
    """Threads inside one operator; 0 lets the backend use every core."""
    inter_op_threads: int = 1
    """Threads across independent operators (ONNX Runtime)."""
    allow_spinning: bool = False
    """Let ONNX Runtime's intra-op threads spin-wait for more work after each operator. Every graph
    session has its own pool, so on a few shared cores the spinning threads of the graph that just
    ran take the CPU from the next one (query encoder, then scorer) and from other processes; off by
    default (a ColBERT request from the store on 2 loaded cores: see README, Latency over gRPC)."""
    numpy_threads: int = 1
    """Threads of numpy's BLAS (MaxSim of a request from its states or codes), set for the whole
    process when an engine starts; 0 leaves the library's default (every core). One: the products
    are small, and a multi-threaded BLAS beside ONNX Runtime's threads and other work took 3x as
    long on 2 loaded cores (benchmarks/colbert_path.py: 31 ms against 5 ms for the same scoring)."""

    def __post_init__(self) -> None:
        if self.provider not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"provider must be auto, cpu or cuda, got {self.provider!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.inference_precision not in ("auto", "f32", "bf16"):
            raise ConfigError(f"inference_precision must be auto, f32 or bf16, got {self.inference_precision!r}")
        if self.backend == "openvino" and self.provider == "cuda":
            raise ConfigError(
                "backend 'openvino' runs on the CPU: use provider 'cpu' or 'auto' with it, or backend "
                "'onnxruntime' with provider 'cuda'"
            )
        if self.backend == "onnxruntime" and self.inference_precision != "auto":
            raise ConfigError(
                f"inference_precision {self.inference_precision!r} is an OpenVINO setting; with backend "
                "'onnxruntime' the precision is the artifact's (reranker export --precision)"
            )
        if self.numpy_threads < 0:
            raise ConfigError(f"numpy_threads must be >= 0 (0 = numpy's default), got {self.numpy_threads}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigError(
                f"thread counts must be >= 0 (0 = ONNX Runtime's default), got intra_op_threads="
                f"{self.intra_op_threads} and inter_op_threads={self.inter_op_threads}"
            )
