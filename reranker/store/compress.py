"""Choosing and fitting a store codec offline (see :mod:`reranker.store.codec` for the formats).

``residual`` fits k-means centroids (numpy Lloyd iterations, so that a serve-only install can
build the default's compressed store) on a sample of the collection's token vectors, then
per-dimension residual buckets (quantiles) and their values (bucket means) on the same sample.
``pq`` fits the same centroids, then 256 codewords per sub-vector of the residual (k-means again).
The request path never imports this module (only store builds do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reranker.arch import ArchSpec
from reranker.errors import ConfigError
from reranker.store.codec import CODECS, PLAIN, Codec, PlainCodec, ResidualCodec, nearest
from reranker.store.pq import PQ_CODEWORDS, PQCodec

FIT_BITS = (1, 2, 4)


@dataclass(frozen=True)
class CodecConfig:
    """How a store build encodes token vectors."""

    name: str = "float16"
    """One of ``float16``, ``float32`` (as they are), ``residual`` (centroid + residual bits) or ``pq``
    (centroid + product-quantised residual)."""
    nbits: int = 1
    """residual: bits per dimension of the residual (1, 2 or 4)."""
    centroids: int = 1024
    """residual, pq: k-means centroids (the README's figures: 1,024); 0 picks a power of two near
    4 x sqrt(k-means points)."""
    sample_passages: int = 2048
    """residual, pq: passages (evenly spaced over the collection) whose vectors fit the codec."""
    kmeans_iters: int = 10
    """residual, pq: Lloyd iterations of k-means."""
    kmeans_points: int = 32768
    """residual, pq: sample vectors k-means runs on (evenly spaced; the residual buckets use the whole
    sample, the pq codebooks these vectors)."""
    seed: int = 0
    """residual, pq: k-means initialisation seed (fitting is deterministic for a seed)."""
    subspaces: int = 16
    """pq: sub-vectors of the residual, one byte of codes each (must divide the dimensions)."""

    def __post_init__(self) -> None:
        if self.name not in CODECS:
            raise ConfigError(f"store codec must be one of {', '.join(CODECS)}, got {self.name!r}")
        if self.nbits not in FIT_BITS:
            raise ConfigError(f"residual bits per dimension must be one of {FIT_BITS}, got {self.nbits}")
        if self.centroids < 0 or self.centroids > 1 << 20:
            raise ConfigError(f"centroids must be 0 (automatic) to {1 << 20}, got {self.centroids}")
        if self.subspaces < 1:
            raise ConfigError(f"pq sub-vectors must be >= 1, got {self.subspaces}")
        if min(self.sample_passages, self.kmeans_iters, self.kmeans_points) < 1:
            raise ConfigError(
                f"sample_passages, kmeans_iters and kmeans_points must be >= 1, got "
                f"{self.sample_passages}, {self.kmeans_iters} and {self.kmeans_points}"
            )

    @property
    def fitted(self) -> bool:
        """The codec has parameters fitted on the collection (needs a sample before building)."""
        return self.name not in PLAIN

    def key(self) -> dict[str, object]:
        """What identifies the codec's fitting (a resumed build must match it)."""
        if not self.fitted:
            return {"name": self.name}
        unused = "nbits" if self.name == "pq" else "subspaces"
        return {k: v for k, v in self.__dict__.items() if k != unused}


def default_codec(arch: ArchSpec) -> CodecConfig:
    """The store codec ``arch`` is built with unless told otherwise (``ArchSpec.store_codec``).

    >>> from reranker.arch import spec
    >>> default_codec(spec("colbert")).name, default_codec(spec("colbert")).nbits, default_codec(spec("bert_dot")).name
    ('residual', 1, 'float16')
    """
    name, nbits = arch.store_codec
    return CodecConfig(name, nbits=nbits or 1)


def auto_centroids(tokens: int) -> int:
    """A power of two near 4 x sqrt(tokens), at least 32 sample vectors per centroid, at most 65,536.

    >>> auto_centroids(190_000), auto_centroids(1_000), auto_centroids(10**9)
    (2048, 16, 65536)
    """
    target = 4 * math.sqrt(max(tokens, 1))
    k = 1 << max(0, round(math.log2(target)))
    while k > 1 and k * 32 > tokens:
        k //= 2
    return max(1, min(k, 1 << 16))


def sample_positions(count: int, wanted: int) -> list[int]:
    """``wanted`` evenly spaced indices of ``range(count)`` (all of them when fewer).

    >>> sample_positions(10, 3), sample_positions(2, 5)
    ([0, 3, 6], [0, 1])
    """
    if wanted >= count:
        return list(range(count))
    return [i * count // wanted for i in range(wanted)]


def fit_codec(cfg: CodecConfig, sample: np.ndarray) -> Codec:
    """The codec of ``cfg`` for token vectors like ``sample`` ((n, dim) float).

    Raises :class:`ConfigError` for an empty sample.
    """
    if sample.ndim != 2 or not len(sample):
        raise ConfigError(f"fitting a store codec needs a non-empty (n, dim) sample of vectors, got {sample.shape}")
    if not cfg.fitted:
        return PlainCodec(int(sample.shape[1]), cfg.name)
    points = min(len(sample), cfg.kmeans_points)
    common = {"centroids": cfg.centroids or auto_centroids(points), "iters": cfg.kmeans_iters, "seed": cfg.seed, "points": points}
    if cfg.name == "pq":
        return fit_pq(sample, subspaces=cfg.subspaces, **common)
    return fit_residual(sample, nbits=cfg.nbits, **common)


def kmeans(x: np.ndarray, k: int, *, iters: int, seed: int) -> np.ndarray:
    """(k, dim) centroids of the (n, dim) vectors ``x``: Lloyd's algorithm from ``k`` distinct
    random vectors (a seeded numpy generator, so the same input gives the same centroids); an
    empty cluster keeps its centroid. Plain numpy (BLAS matmuls), so that a serve-only install
    can build a compressed store: ``iters`` x n x k x dim multiply-adds.

    >>> [round(float(c), 2) for c in kmeans(np.array([[0.0], [0.1], [10.0], [10.2]]), 2, iters=5, seed=0).ravel()]
    [0.05, 10.1]
    """
    if not 1 <= k <= len(x):
        raise ConfigError(f"k-means needs 1 <= k <= {len(x)} vectors, got k = {k}")
    rng = np.random.default_rng(seed)
    centres = np.array(x[np.sort(rng.choice(len(x), size=k, replace=False))], dtype=np.float32)
    for _ in range(iters):
        labels = nearest(x, centres)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=k)
        filled = counts > 0
        starts = (np.cumsum(counts) - counts)[filled]
        centres[filled] = np.add.reduceat(x[order], starts, axis=0) / counts[filled, None]
    return centres


def fit_residual(
    sample: np.ndarray, *, centroids: int, nbits: int, iters: int = 10, seed: int = 0, points: int = 0
) -> ResidualCodec:
    """k-means centroids (:func:`kmeans`) on ``points`` evenly spaced vectors of
    ``sample`` (0: all), then per dimension the residual of the whole sample: ``2**nbits`` quantile
    buckets and their means. Decoded vectors are renormalised when
    the sample's vectors all have unit length (ColBERT, TK)."""
    x = np.ascontiguousarray(sample, dtype=np.float32)
    fit_on = x[sample_positions(len(x), points or len(x))]
    centres = kmeans(fit_on, min(centroids, len(fit_on)), iters=iters, seed=seed)
    residual = x - centres[nearest(x, centres)]
    levels = 1 << nbits
    cutoffs = np.quantile(residual, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)  # (dim, levels-1)
    buckets = np.zeros(residual.shape, dtype=np.uint8)
    for j in range(levels - 1):
        buckets += residual > cutoffs[None, :, j]
    weights = np.empty((x.shape[1], levels), dtype=np.float32)
    for b in range(levels):
        hit = buckets == b
        count = hit.sum(0)
        mean = np.where(hit, residual, 0).sum(0) / np.maximum(count, 1)
        weights[:, b] = np.where(count > 0, mean, 0.0)
    norms = np.linalg.norm(x, axis=1)
    normalize = bool(np.all(np.abs(norms - 1) < 1e-2))
    return ResidualCodec(centres, cutoffs, weights, nbits, normalize)


def fit_pq(sample: np.ndarray, *, centroids: int, subspaces: int, iters: int = 10, seed: int = 0, points: int = 0) -> PQCodec:
    """k-means centroids (:func:`kmeans`) on ``points`` evenly spaced vectors of ``sample`` (0: all),
    then per sub-vector of their residuals 256 codewords (k-means; a sample of fewer vectors repeats
    its last codeword). Decoded vectors are renormalised when the sample's vectors all have unit length.
    Raises :class:`ConfigError` when ``subspaces`` does not divide the dimensions.

    >>> x = np.eye(4, dtype=np.float32)
    >>> codec = fit_pq(x, centroids=1, subspaces=2)
    >>> bool(np.allclose(codec.decode(codec.encode(x)), x, atol=1e-6)), codec.describe()["subspaces"]
    (True, 2)
    """
    x = np.ascontiguousarray(sample, dtype=np.float32)
    dim = x.shape[1]
    if dim % subspaces:
        raise ConfigError(f"pq sub-vectors must divide the {dim} dimensions, got {subspaces}")
    fit_on = x[sample_positions(len(x), points or len(x))]
    centres = kmeans(fit_on, min(centroids, len(fit_on)), iters=iters, seed=seed)
    residual = fit_on - centres[nearest(fit_on, centres)]
    width = dim // subspaces
    books = np.empty((subspaces, PQ_CODEWORDS, width), dtype=np.float32)
    for j in range(subspaces):
        part = np.ascontiguousarray(residual[:, j * width : (j + 1) * width])
        words = kmeans(part, min(PQ_CODEWORDS, len(part)), iters=iters, seed=seed + 1 + j)
        books[j, : len(words)] = words
        books[j, len(words) :] = words[-1]
    norms = np.linalg.norm(x, axis=1)
    normalize = bool(np.all(np.abs(norms - 1) < 1e-2))
    return PQCodec(centres, books, normalize)
