"""One artifact's graphs on ONNX Runtime or OpenVINO (``RuntimeConfig.backend``): padded arrays in, arrays out.

The scorer knows no text, no passage store and no batching policy: the engine tokenises,
looks passages up, plans batches and pads (its prepare stage), then calls these methods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ConfigError
from reranker.runtime.config import RuntimeConfig
from reranker.runtime.maxsim import maxsim
from reranker.runtime.sessions import Graph, open_graph

log = logging.getLogger(__name__)

CAST_FP16_TO_FP32 = (
    b'\x08\x08:m\n\x17\n\x01x\x12\x01y"\x04Cast*\t\n\x02to\x18\x01\xa0\x01\x02\x12\x04castZ%\n\x01x'
    b"\x12 \n\x1e\x08\n\x12\x1a\n\x07\x12\x05batch\n\x08\x12\x06length\n\x05\x12\x03dimb%\n\x01y"
    b"\x12 \n\x1e\x08\x01\x12\x1a\n\x07\x12\x05batch\n\x08\x12\x06length\n\x05\x12\x03dimB\x04\n\x00\x10\x11"
)
"""The ONNX model ``y = Cast(x: float16 -> float32)`` (batch, length, dim; opset 17), as ``onnx.helper`` writes it
(tests/test_export_runtime.py rebuilds it and compares). ONNX Runtime's cast is vectorised; numpy's
``astype`` of a 100-passage ColBERT batch from the fp16 store took 5x as long."""


class OnnxScorer:
    """The graphs of one artifact, each in its own session (ONNX Runtime) or compiled model (OpenVINO).

    A cross-encoder has ``cross_encoder``; split models have ``query_encoder``,
    ``passage_encoder`` and ``scorer``. Raises :class:`ArtifactError` for a graph the backend
    cannot load and :class:`ConfigError` for an unusable provider or an unknown set of graphs.
    """

    def __init__(self, graphs: Mapping[str, Path], cfg: RuntimeConfig | None = None) -> None:
        self.cfg = cfg or RuntimeConfig()
        names = set(graphs)
        if names not in ({"cross_encoder"}, {"query_encoder", "passage_encoder", "scorer"}):
            raise ConfigError(
                f"an artifact has either a cross_encoder graph or query_encoder, passage_encoder and "
                f"scorer graphs; got {sorted(names)}"
            )
        self.graphs = {name: open_graph(Path(path), self.cfg) for name, path in graphs.items()}
        self.split = "scorer" in self.graphs
        self.provider = next(iter(self.graphs.values())).provider
        """What runs the graphs: the execution provider ONNX Runtime chose (e.g. ``CPUExecutionProvider``)
        or OpenVINO (``OpenVINO 2026.4.1 CPU``)."""
        self.on_cpu = self.provider == "CPUExecutionProvider" or self.provider.endswith(" CPU")
        """The graphs run on the CPU (numpy arithmetic beside them costs no device transfer)."""
        self._cast = (
            Graph(
                CAST_FP16_TO_FP32,
                RuntimeConfig(provider="cpu", intra_op_threads=self.cfg.intra_op_threads, allow_spinning=self.cfg.allow_spinning),
            )
            if self.split
            else None
        )

    def _states(self, name: str, array: np.ndarray) -> np.ndarray:
        """A state input of the scorer graph: float16 (passage states from the store) cast to float32
        through ONNX Runtime when the graph takes float32; anything else as it is (the graph checks it)."""
        if array.dtype != np.float16 or self._cast is None or self.graphs["scorer"].input_types.get(name) != "tensor(float)":
            return array
        return self._cast.run({"x": array})[0]

    def maxsim(self, q: np.ndarray, p: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """:func:`reranker.runtime.maxsim.maxsim` of one query's pairs, float16 states (a plain
        store's) cast to float32 through ONNX Runtime first (numpy's cast is several times slower)."""
        if p.dtype == np.float16 and self._cast is not None and len(p):
            p = self._cast.run({"x": np.ascontiguousarray(p)[None]})[0][0]
        return maxsim(q, p, lengths)

    def _encoder(self, name: str) -> Any:
        if not self.split:
            raise ConfigError("a cross-encoder has no query or passage encoder: score token ids with score()")
        return self.graphs[name]

    def encode_query(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, length) int64 ids and mask -> (batch, length', dim) float state and its (batch, length') mask."""
        vectors, vector_mask = self._encoder("query_encoder").run({"ids": ids, "mask": mask})
        return vectors, vector_mask

    def encode_passages(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, length) int64 ids and mask -> (batch, length', dim) float state (1 row for BERT-dot) and mask."""
        vectors, vector_mask = self._encoder("passage_encoder").run({"ids": ids, "mask": mask})
        return vectors, vector_mask

    def score(self, q: np.ndarray, q_mask: np.ndarray, p: np.ndarray, p_mask: np.ndarray) -> np.ndarray:
        """One graph run on a ready batch of pairs; (batch,) float32 scores.

        Cross-encoder: ``q`` and ``p`` are (batch, length) int64 token ids. Split models: they are
        (batch, length, dim) float32 or float16 states (float16 is cast here, e.g. padded straight
        from the store). Masks are (batch, length) int64, 1 for real positions.
        """
        if self.split:
            feeds = {
                "q_vectors": self._states("q_vectors", q),
                "q_mask": q_mask,
                "p_vectors": self._states("p_vectors", p),
                "p_mask": p_mask,
            }
            return self.graphs["scorer"].run(feeds)[0].astype(np.float32)
        feeds = {"q_ids": q, "q_mask": q_mask, "p_ids": p, "p_mask": p_mask}
        return self.graphs["cross_encoder"].run(feeds)[0].astype(np.float32)
