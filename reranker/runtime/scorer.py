"""One artifact's graphs on ONNX Runtime: padded arrays in, arrays out.

The scorer knows no text, no passage store and no batching policy: the engine tokenises,
looks passages up, plans batches and pads (its prepare stage), then calls these methods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from reranker.errors import ConfigError
from reranker.runtime.config import RuntimeConfig
from reranker.runtime.sessions import Graph

log = logging.getLogger(__name__)


class OnnxScorer:
    """The graphs of one artifact, each in its own session.

    A cross-encoder has ``cross_encoder``; split models have ``query_encoder``,
    ``passage_encoder`` and ``scorer``. Raises :class:`ArtifactError` for a graph ONNX Runtime
    cannot load and :class:`ConfigError` for an unusable provider or an unknown set of graphs.
    """

    def __init__(self, graphs: Mapping[str, Path], cfg: RuntimeConfig | None = None) -> None:
        self.cfg = cfg or RuntimeConfig()
        names = set(graphs)
        if names not in ({"cross_encoder"}, {"query_encoder", "passage_encoder", "scorer"}):
            raise ConfigError(f"an artifact has either a cross_encoder graph or query_encoder, passage_encoder and "
                              f"scorer graphs; got {sorted(names)}")
        self.graphs = {name: Graph(Path(path), self.cfg) for name, path in graphs.items()}
        self.split = "scorer" in self.graphs
        self.provider = next(iter(self.graphs.values())).provider
        """The execution provider ONNX Runtime chose (e.g. ``CPUExecutionProvider``)."""

    def _encoder(self, name: str) -> Graph:
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
        (batch, length, dim) float32 states. Masks are (batch, length) int64, 1 for real positions.
        """
        if self.split:
            feeds = {"q_vectors": q, "q_mask": q_mask, "p_vectors": p, "p_mask": p_mask}
            return self.graphs["scorer"].run(feeds)[0].astype(np.float32)
        feeds = {"q_ids": q, "q_mask": q_mask, "p_ids": p, "p_mask": p_mask}
        return self.graphs["cross_encoder"].run(feeds)[0].astype(np.float32)
