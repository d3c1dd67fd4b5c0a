"""How a passage store holds its token vectors on disk, and how serving decodes them (numpy only).

A codec turns (tokens, dim) float vectors into per-token *columns* (fixed-width rows, one file
each, memory-mapped by :class:`reranker.store.PassageStore`) and back. Three families:

* ``float16`` / ``float32``: the vectors as they are (``vectors.bin``); decoding is a view.
* ``residual``: the compression of ColBERTv2 / PLAID (Santhanam et al., arXiv 2112.01488,
  2205.09707): each vector is stored as the id of its nearest k-means centroid
  (``centroid_ids.bin``, uint16 up to 65,536 centroids) plus its residual quantised to ``nbits``
  bits per dimension (``residual_codes.bin``, packed). Unlike ColBERTv2 the bucket cut-offs and
  values are per dimension. Its parameters (centroids, cut-offs, bucket values) are files of the
  store, checksummed by its manifest. Bytes per token: ``dim * nbits / 8`` plus 2 (or 4).
* ``pq`` (:mod:`reranker.store.pq`): the centroid id plus the residual by product quantisation
  (IVF-PQ, Jégou et al., TPAMI 2011): per sub-vector of ``dim / subspaces`` dimensions, the byte of its nearest of 256
  codewords (``pq_codes.bin``). Bytes per token: ``subspaces`` plus 2 (or 4): 18 for a 128-d
  ColBERT in 16 sub-vectors, where one residual bit per dimension also takes 18 and loses more.

Decoding one byte of codes is a single table lookup (one table row per byte position and value),
so a 100-candidate request decodes ~9,000 vectors with two gathers and an add. Fitting the
centroids is offline (:mod:`reranker.store.compress`); this module only encodes and decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reranker.errors import ArtifactError, ConfigError
from reranker.store.pq import PQ_FILES, PQCodec
from reranker.store.rows import Column, centroid_ids, nearest, out_of_range, unit_length

PLAIN = ("float16", "float32")
CODECS = (*PLAIN, "residual", "pq")
RESIDUAL_BITS = (1, 2, 4, 8)
PARAM_FILES = ("codec-centroids.npy", "codec-cutoffs.npy", "codec-weights.npy")


class Codec(Protocol):
    """Token vectors <-> per-token columns. ``encode``: (n, dim) float -> {file: (n, width) array};
    ``decode``: {file: (n, width) rows} -> (n, dim) float (float32, or the stored dtype for plain)."""

    @property
    def name(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def columns(self) -> tuple[Column, ...]: ...
    def encode(self, vectors: np.ndarray) -> dict[str, np.ndarray]: ...
    def decode(self, rows: dict[str, np.ndarray]) -> np.ndarray: ...
    def describe(self) -> dict[str, Any]: ...
    def save(self, directory: Path) -> tuple[str, ...]: ...


def bytes_per_token(codec: Codec) -> int:
    """Bytes a codec stores per token vector (every column's row)."""
    return sum(np.dtype(c.dtype).itemsize * c.width for c in codec.columns)


@dataclass(frozen=True)
class PlainCodec:
    """The vectors as they are, in ``float16`` or ``float32``."""

    dim: int
    name: str = "float16"

    def __post_init__(self) -> None:
        if self.name not in PLAIN:
            raise ConfigError(f"a plain store codec is one of {', '.join(PLAIN)}, got {self.name!r}")

    @property
    def columns(self) -> tuple[Column, ...]:
        return (Column("vectors.bin", self.name, self.dim),)

    def encode(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        return {"vectors.bin": np.ascontiguousarray(vectors, dtype=self.name)}

    def decode(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        return rows["vectors.bin"]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def save(self, directory: Path) -> tuple[str, ...]:
        return ()


class ResidualCodec:
    """Nearest centroid + ``nbits``-bit residual per dimension (see the module doc).

    ``centroids``: (K, dim); ``cutoffs``: (dim, 2**nbits - 1) increasing bucket bounds of the
    residual per dimension; ``weights``: (dim, 2**nbits) the value each bucket decodes to;
    ``normalize``: decoded vectors are scaled to unit length (for L2-normalised states).
    Raises :class:`ConfigError` for inconsistent shapes.
    """

    name = "residual"

    def __init__(self, centroids: np.ndarray, cutoffs: np.ndarray, weights: np.ndarray, nbits: int, normalize: bool) -> None:
        if nbits not in RESIDUAL_BITS:
            raise ConfigError(f"residual bits per dimension must be one of {RESIDUAL_BITS}, got {nbits}")
        k, dim = centroids.shape
        if not 1 <= k <= 1 << 32 or dim * nbits % 8:
            raise ConfigError(f"residual codec: {k} centroids of {dim} dims at {nbits} bits do not fit whole bytes")
        if cutoffs.shape != (dim, (1 << nbits) - 1) or weights.shape != (dim, 1 << nbits):
            raise ConfigError(
                f"residual codec: cutoffs {cutoffs.shape} / weights {weights.shape} do not match {dim} dims at {nbits} bits"
            )
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        for what, table in (("centroids", self.centroids), ("cutoffs", self.cutoffs), ("weights", self.weights)):
            if not np.isfinite(table).all():
                raise ConfigError(f"residual codec: its {what} hold {int((~np.isfinite(table)).sum())} NaN or infinite values")
        self.nbits, self.normalize, self.dim = nbits, bool(normalize), dim
        self.id_dtype = "uint16" if k <= 1 << 16 else "uint32"
        per = 8 // nbits  # dimensions per byte
        values = np.arange(256)
        shifts = 8 - nbits * (np.arange(per) + 1)  # the first dimension in the high bits
        buckets = (values[:, None] >> shifts[None, :]) & ((1 << nbits) - 1)  # (256, per)
        dims = np.arange(dim).reshape(dim // per, per)  # (bytes, per)
        # row 256 * position + byte value: the values of that byte's dimensions
        self._table = np.ascontiguousarray(self.weights[dims[:, None, :], buckets[None, :, :]].reshape(-1, per))
        self._row_base = np.arange(dim // per, dtype=np.intp) * 256

    @property
    def columns(self) -> tuple[Column, ...]:
        return (Column("centroid_ids.bin", self.id_dtype, 1), Column("residual_codes.bin", "uint8", self.dim * self.nbits // 8))

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        """(n,) index of each vector's nearest centroid (Euclidean)."""
        return nearest(vectors, self.centroids)

    def encode(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"residual codec encodes (n, {self.dim}) vectors, got {x.shape}")
        ids = self.nearest(x)
        residual = x - self.centroids[ids]
        buckets = np.zeros(residual.shape, dtype=np.uint8)  # (n, dim)
        for j in range(self.cutoffs.shape[1]):
            buckets += residual > self.cutoffs[None, :, j]
        bits = (buckets[:, :, None] >> np.arange(self.nbits - 1, -1, -1, dtype=np.uint8)) & 1  # (n, dim, nbits)
        codes = np.packbits(bits.reshape(len(x), -1), axis=1)
        return {"centroid_ids.bin": ids.astype(self.id_dtype)[:, None], "residual_codes.bin": codes}

    def check_ids(self, ids: np.ndarray) -> int:
        """How many of ``ids`` (centroid ids as stored) are out of range: a damaged store."""
        return out_of_range(ids, len(self.centroids))

    def _ids(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        return centroid_ids(rows, len(self.centroids))

    def _sum(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """centroid + residual of each row, (n, dim) float32, before normalising."""
        ids = self._ids(rows)
        index = np.asarray(rows["residual_codes.bin"]).astype(np.intp)
        index += self._row_base
        out = np.take(self._table, index, axis=0).reshape(len(ids), self.dim)
        out += np.take(self.centroids, ids, axis=0)
        return out

    def decode(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Raises :class:`StoreDamagedError` for a centroid id out of range (a damaged store)."""
        out = self._sum(rows)
        return unit_length(out) if self.normalize else out

    @property
    def scores_codes(self) -> bool:
        """Dot products can be taken from the codes without decoding (1 bit per dimension:
        the residual is linear in the bits), see :meth:`dots`."""
        return self.nbits == 1

    def inverse_norms(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """(n,) float32: what :meth:`decode` scales each row by (1 when it does not normalise)."""
        if not self.normalize:
            return np.ones(len(np.asarray(rows["centroid_ids.bin"])), dtype=np.float32)
        out = self._sum(rows)
        return (1.0 / np.maximum(np.sqrt(np.einsum("nd,nd->n", out, out)), 1e-12)).astype(np.float32)

    def dots(self, q: np.ndarray, rows: dict[str, np.ndarray], inverse_norms: np.ndarray) -> np.ndarray:
        """(n, query positions) float32: each decoded row's dot product with each row of ``q``
        ((positions, dim)), from the codes without decoding them (needs :attr:`scores_codes`).

        A decoded row is (c + r) * s with c its centroid, r = w0 + (w1 - w0) * bits its residual and
        s its inverse norm (``inverse_norms``, given: see :meth:`inverse_norms`), so q . row is
        (q . c + q . w0 + ((w1 - w0) * q) . bits) * s: a lookup in the (centroids, positions) table
        C . q and one product with the unpacked bits. Raises :class:`StoreDamagedError` for a
        centroid id out of range.
        """
        if not self.scores_codes:
            raise ConfigError(f"dot products from the codes need 1 bit per dimension, this codec has {self.nbits}")
        ids = self._ids(rows)
        q = np.asarray(q, dtype=np.float32)
        bits = np.unpackbits(np.asarray(rows["residual_codes.bin"]), axis=1).astype(np.float32)  # first dimension high
        out = bits @ (q * (self.weights[:, 1] - self.weights[:, 0])).T
        out += np.take(self.centroids @ q.T, ids, axis=0)  # rows of a C-ordered (centroids, positions) table
        out += q @ self.weights[:, 0]
        out *= np.asarray(inverse_norms, dtype=np.float32)[:, None]
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "centroids": len(self.centroids),
            "nbits": self.nbits,
            "normalize": self.normalize,
            "id_dtype": self.id_dtype,
            "param_files": list(PARAM_FILES),
        }

    def save(self, directory: Path) -> tuple[str, ...]:
        """Write the parameters into ``directory``; returns their file names (for the manifest)."""
        for name, array in zip(PARAM_FILES, (self.centroids, self.cutoffs, self.weights), strict=True):
            np.save(Path(directory) / name, array, allow_pickle=False)
        return PARAM_FILES


def load_codec(directory: Path, manifest: dict[str, Any]) -> Codec:
    """The codec a store's manifest names (stores made before codecs existed: their ``dtype``).

    Raises :class:`ArtifactError` for an unknown codec or parameters that do not fit it.
    """
    info = manifest.get("codec") or {"name": manifest["dtype"]}
    dim = int(manifest["dim"])
    try:
        if info["name"] in PLAIN:
            return PlainCodec(dim, info["name"])
        if info["name"] == "residual":
            arrays = [np.load(Path(directory) / name, allow_pickle=False) for name in PARAM_FILES]
            centroids, cutoffs, weights = arrays
            codec = ResidualCodec(centroids, cutoffs, weights, nbits=int(info["nbits"]), normalize=bool(info["normalize"]))
            if codec.dim != dim:
                raise ConfigError(f"its centroids have {codec.dim} dims, the store {dim}")
            return codec
        if info["name"] == "pq":
            centroids, codebooks = (np.load(Path(directory) / name, allow_pickle=False) for name in PQ_FILES)
            pq = PQCodec(centroids, codebooks, normalize=bool(info["normalize"]))
            if pq.dim != dim:
                raise ConfigError(f"its centroids have {pq.dim} dims, the store {dim}")
            return pq
    except (ConfigError, OSError, ValueError) as exc:
        raise ArtifactError(f"store {directory}: codec {info.get('name')!r} cannot be loaded: {exc}") from exc
    raise ArtifactError(f"store {directory} uses codec {info['name']!r}; this reader knows {', '.join(CODECS)}")
