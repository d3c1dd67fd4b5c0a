"""OpenVINO as the engine of one ONNX graph (the ``openvino`` backend; CPU only).

OpenVINO reads the artifact's ONNX files as they are, including the QDQ int8 graphs of
``reranker export --precision int8-static``, which it runs with int8 kernels (VNNI on x86).
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ArtifactError, ConfigError
from reranker.runtime.config import RuntimeConfig

ONNX_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "i64": "tensor(int64)", "i32": "tensor(int32)"}


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ConfigError(
            "backend 'openvino' needs the openvino package: pip install 'reranker[openvino]' (or use backend 'onnxruntime')"
        ) from exc
    return openvino


class OpenVinoGraph:
    """One ONNX graph compiled by OpenVINO for the CPU, with the interface of ONNX Runtime's
    :class:`~reranker.runtime.sessions.Graph`. Safe to call from several threads (each call takes
    an inference request of its own from a pool)."""

    def __init__(self, path: Path, cfg: RuntimeConfig) -> None:
        ov = _openvino()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if cfg.intra_op_threads:
            config["INFERENCE_NUM_THREADS"] = cfg.intra_op_threads
        if cfg.inference_precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = cfg.inference_precision
        self.path = path
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError for files it cannot read or compile
            raise ArtifactError(f"OpenVINO cannot load {path}: {exc}") from exc
        self.provider = f"OpenVINO {ov.__version__.split('-')[0]} CPU"
        self.inputs = {port.get_any_name() for port in self._compiled.inputs}
        self.input_types = {
            port.get_any_name(): ONNX_TYPES.get(port.get_element_type().get_type_name(), str(port.get_element_type()))
            for port in self._compiled.inputs
        }
        """Input name -> ONNX type, e.g. ``tensor(float)`` (as ONNX Runtime names it)."""
        self._outputs = list(self._compiled.outputs)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs (copies: they outlive the next call) for the inputs it declares."""
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            result = request.infer({k: v for k, v in feeds.items() if k in self.inputs})
            return [np.array(result[port], copy=True) for port in self._outputs]
        finally:
            self._requests.put(request)
