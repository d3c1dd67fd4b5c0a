"""What every store codec is made of: the per-token columns it writes, and nearest-centroid search
(numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
