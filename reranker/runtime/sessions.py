"""ONNX Runtime sessions with an explicit, logged and visible provider choice."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from reranker.errors import ArtifactError, ConfigError
from reranker.runtime.config import RuntimeConfig

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def requested_providers(cfg: RuntimeConfig) -> list[str]:
    available = ort.get_available_providers()
    if cfg.provider == "cpu":
        return [CPU]
    if cfg.provider == "cuda" and CUDA not in available:
        raise ConfigError(
            f"provider 'cuda' was requested but this onnxruntime offers only {available}; "
            "install reranker[gpu] (onnxruntime-gpu) on a machine with an NVIDIA GPU"
        )
    return [CUDA, CPU] if CUDA in available else [CPU]


def open_graph(path: Path, cfg: RuntimeConfig) -> Any:
    """One graph file on the backend ``cfg`` names: :class:`Graph` (ONNX Runtime) or
    :class:`~reranker.runtime.openvino_graph.OpenVinoGraph`; both have ``run``, ``inputs``,
    ``input_types`` and ``provider``."""
    if cfg.backend == "openvino":
        from reranker.runtime.openvino_graph import OpenVinoGraph

        return OpenVinoGraph(path, cfg)
    return Graph(path, cfg)


class Graph:
    """One ONNX graph (a file, or the bytes of a model) in one ONNX Runtime session; feeds only the
    inputs the graph declares."""

    def __init__(self, path: Path | bytes, cfg: RuntimeConfig) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = cfg.intra_op_threads
        options.inter_op_num_threads = cfg.inter_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = requested_providers(cfg)
        self.path = path if isinstance(path, Path) else Path("<in-memory graph>")
        try:
            model = path if isinstance(path, bytes) else str(path)
            self.session = ort.InferenceSession(model, sess_options=options, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise ArtifactError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        if wanted[0] == CUDA and self.provider != CUDA:
            if cfg.provider == "cuda":
                raise ConfigError(f"provider 'cuda' was requested but ONNX Runtime gave {self.provider} for {self.path}")
            log.warning("CUDA provider is installed but unusable for %s: running on %s", self.path.name, self.provider)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        """Input name -> ONNX type, e.g. ``tensor(float)``."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
