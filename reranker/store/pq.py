"""The ``pq`` store codec: nearest k-means centroid + product-quantised residual (IVF-PQ: Jégou et
al., "Product quantization for nearest neighbor search", TPAMI 2011), numpy only.

Each token vector is stored as its centroid id (``centroid_ids.bin``) and, per sub-vector of
``dim / subspaces`` dimensions of its residual, the byte of the nearest of 256 codewords
(``pq_codes.bin``): ``subspaces`` + 2 bytes a token. Decoding is one gather per sub-vector from a
(subspaces x 256, width) table and an add; MaxSim takes one matrix product with the decoded rows.
Fitting is offline (:func:`reranker.store.compress.fit_pq`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ConfigError
from reranker.store.rows import Column, centroid_ids, nearest, out_of_range, unit_length

PQ_FILES = ("codec-centroids.npy", "codec-codebooks.npy")
PQ_CODEWORDS = 256
"""Codewords per sub-vector: one byte of codes each."""


class PQCodec:
    """Nearest centroid + product-quantised residual (see the module doc).

    ``centroids``: (K, dim); ``codebooks``: (subspaces, 256, dim / subspaces), the codewords of
    each sub-vector of the residual; ``normalize``: decoded vectors are scaled to unit length.
    Raises :class:`ConfigError` for inconsistent shapes or values that are not finite.
    """

    name = "pq"

    def __init__(self, centroids: np.ndarray, codebooks: np.ndarray, normalize: bool) -> None:
        if centroids.ndim != 2 or codebooks.ndim != 3:
            raise ConfigError(
                f"pq codec: centroids {centroids.shape} / codebooks {codebooks.shape} are not (K, dim) / (M, 256, width)"
            )
        k, dim = centroids.shape
        m, codewords, width = codebooks.shape
        if not 1 <= k <= 1 << 32 or codewords != PQ_CODEWORDS or m * width != dim:
            raise ConfigError(
                f"pq codec: {k} centroids of {dim} dims do not fit codebooks of {m} sub-vectors x {codewords} "
                f"codewords x {width} dims (needs {PQ_CODEWORDS} codewords and sub-vectors that tile the dims)"
            )
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
        for what, table in (("centroids", self.centroids), ("codebooks", self.codebooks)):
            if not np.isfinite(table).all():
                raise ConfigError(f"pq codec: its {what} hold {int((~np.isfinite(table)).sum())} NaN or infinite values")
        self.normalize, self.dim, self.subspaces, self.width = bool(normalize), dim, m, width
        self.id_dtype = "uint16" if k <= 1 << 16 else "uint32"
        self._table = self.codebooks.reshape(m * PQ_CODEWORDS, width)  # row 256 * sub-vector + code
        self._row_base = np.arange(m, dtype=np.intp) * PQ_CODEWORDS

    @property
    def columns(self) -> tuple[Column, ...]:
        return (Column("centroid_ids.bin", self.id_dtype, 1), Column("pq_codes.bin", "uint8", self.subspaces))

    def encode(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"pq codec encodes (n, {self.dim}) vectors, got {x.shape}")
        ids = nearest(x, self.centroids)
        residual = x - self.centroids[ids]
        codes = np.empty((len(x), self.subspaces), dtype=np.uint8)
        for j, book in enumerate(self.codebooks):
            codes[:, j] = nearest(np.ascontiguousarray(residual[:, j * self.width : (j + 1) * self.width]), book)
        return {"centroid_ids.bin": ids.astype(self.id_dtype)[:, None], "pq_codes.bin": codes}

    def check_ids(self, ids: np.ndarray) -> int:
        """How many of ``ids`` (centroid ids as stored) are out of range: a damaged store."""
        return out_of_range(ids, len(self.centroids))

    def _sum(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """centroid + residual of each row, (n, dim) float32, before normalising. Raises
        :class:`StoreDamagedError` for a centroid id out of range."""
        ids = centroid_ids(rows, len(self.centroids))
        index = np.asarray(rows["pq_codes.bin"]).astype(np.intp)
        index += self._row_base
        out = np.take(self._table, index, axis=0).reshape(len(ids), self.dim)
        out += np.take(self.centroids, ids, axis=0)
        return out

    def decode(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Raises :class:`StoreDamagedError` for a centroid id out of range (a damaged store)."""
        out = self._sum(rows)
        return unit_length(out) if self.normalize else out

    scores_codes = True
    """MaxSim runs on the request's rows without padding (:meth:`dots`: one gather per sub-vector,
    the rows normalised, one matrix product)."""
    precomputed_norms = False
    """:meth:`dots` normalises the rows it decodes: no pass over the store for their norms."""

    def dots(self, q: np.ndarray, rows: dict[str, np.ndarray], inverse_norms: np.ndarray | None = None) -> np.ndarray:
        """(n, query positions) float32: each decoded row's dot product with each row of ``q``
        ((positions, dim)); ``inverse_norms`` is not needed (rows are decoded, then normalised).
        Raises :class:`StoreDamagedError` for a centroid id out of range."""
        return self.decode(rows) @ np.asarray(q, dtype=np.float32).T

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "centroids": len(self.centroids),
            "subspaces": self.subspaces,
            "normalize": self.normalize,
            "id_dtype": self.id_dtype,
            "param_files": list(PQ_FILES),
        }

    def save(self, directory: Path) -> tuple[str, ...]:
        """Write the parameters into ``directory``; returns their file names (for the manifest)."""
        for name, array in zip(PQ_FILES, (self.centroids, self.codebooks), strict=True):
            np.save(Path(directory) / name, array, allow_pickle=False)
        return PQ_FILES
