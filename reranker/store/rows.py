"""What the store codecs share: the per-token columns they write, nearest-centroid search, the
check of stored centroid ids and unit-length decoding (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reranker.errors import StoreDamagedError


@dataclass(frozen=True)
class Column:
    """One per-token file of a store: ``width`` values of ``dtype`` per token."""

    file: str
    dtype: str
    width: int


def nearest(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) index of each vector's nearest row of ``centroids`` (Euclidean), in chunks of vectors.

    >>> nearest(np.array([[0.0, 1.0], [5.0, 5.0]]), np.array([[4.0, 4.0], [0.0, 0.0]])).tolist()
    [1, 0]
    """
    c = np.asarray(centroids, dtype=np.float32)
    half_norms = 0.5 * np.einsum("kd,kd->k", c, c)
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        x = np.asarray(vectors[start : start + chunk], dtype=np.float32)
        out[start : start + chunk] = np.argmax(x @ c.T - half_norms, axis=1)
    return out


def out_of_range(ids: np.ndarray, count: int) -> int:
    """How many of ``ids`` (centroid ids as stored) are not below ``count``: a damaged store."""
    return int(np.count_nonzero(ids >= count)) if ids.size else 0


def centroid_ids(rows: dict[str, np.ndarray], count: int) -> np.ndarray:
    """The rows' centroid ids, (n,). Raises :class:`StoreDamagedError` for an id not below ``count``."""
    ids = np.asarray(rows["centroid_ids.bin"]).reshape(-1)
    if ids.size and int(ids.max()) >= count:
        raise StoreDamagedError(
            f"{out_of_range(ids, count)} stored centroid id(s) are out of range (the codec has {count} centroids)"
        )
    return ids


def unit_length(out: np.ndarray) -> np.ndarray:
    """``out`` ((n, dim) float32) with every row scaled to unit length, in place."""
    out /= np.maximum(np.sqrt(np.einsum("nd,nd->n", out, out)), 1e-12)[:, None]
    return out
