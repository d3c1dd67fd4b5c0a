"""Reading a built passage store (numpy only; no ONNX Runtime, no torch).

Layout of a store directory:

* the token vectors, one row per token in passage order, in the files of the store's codec
  (:mod:`reranker.store.codec`): ``vectors.bin`` (total tokens x dim, fp16 or fp32, raw) as they
  are, or ``centroid_ids.bin`` + ``residual_codes.bin`` (``residual``) or + ``pq_codes.bin``
  (``pq``) and the codec's ``codec-*.npy`` parameters;
* ``offsets.npy``: (passages + 1) int64 row offsets into it (one row per passage for BERT-dot);
* ``truncated.npy``: (passages,) bool, the text was cut to the model's passage length;
* ``ids.txt``: the passage ids, one per line, in row order;
* ``manifest.json``: the artifact it belongs to (sha256), shapes, dtype, sizes, checksums.

Opening a store reads the small files and memory-maps the vectors: start-up does not read the
whole store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reranker.errors import ArtifactError, StoreDamagedError, some
from reranker.manifest import sha256_file, verify_manifest
from reranker.store.codec import PARAM_FILES, Codec, bytes_per_token, load_codec
from reranker.store.pq import PQ_FILES

STORE_KIND = "reranker-passage-store"
STORE_DTYPES = ("float16", "float32")
SMALL_FILES = ("offsets.npy", "truncated.npy", "ids.txt")
CHECK_IDS_AT_OPEN_BYTES = 256 * 1024 * 1024
"""Centroid-id files up to this size are bounds-checked when a store opens (larger ones: at each
lookup, and in full by ``reranker store verify``)."""


class ArtifactIdentity(Protocol):
    """What a store checks of the artifact it is opened for (an :class:`reranker.artifact.Artifact`)."""

    @property
    def checksum(self) -> str: ...
    @property
    def directory(self) -> Path: ...


class PassageStore:
    """Read-only access to a built store."""

    def __init__(
        self, directory: Path, manifest: dict[str, Any], codec: Codec | None = None, *, check_ids: bool | None = None
    ) -> None:
        """``check_ids``: bounds-check every centroid id now (None: when the id file is at most
        :data:`CHECK_IDS_AT_OPEN_BYTES`)."""
        self.directory, self.manifest = directory, manifest
        self.ids = (directory / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
        self.offsets = np.load(directory / "offsets.npy")
        self.truncated = np.load(directory / "truncated.npy")
        self.dim = int(manifest["dim"])
        self.dtype = np.dtype(manifest["dtype"])
        """dtype of the decoded vectors :meth:`get` returns."""
        self.codec = codec or load_codec(directory, manifest)
        tokens = int(self.offsets[-1]) if len(self.offsets) else 0
        consistent = len(self.ids) == int(manifest["passages"]) == len(self.offsets) - 1 and tokens == int(manifest["tokens"])
        if not consistent:
            raise ArtifactError(f"store {directory} is inconsistent: ids, offsets and manifest disagree")
        self.columns = {
            c.file: np.memmap(directory / c.file, dtype=c.dtype, mode="r", shape=(tokens, c.width)) for c in self.codec.columns
        }
        self.vectors = self.columns.get("vectors.bin")
        """The raw (tokens, dim) memory map of a plain (float16 / float32) store, else None."""
        self.row = {pid: i for i, pid in enumerate(self.ids)}
        self._inverse_norms: np.ndarray | None = None
        if len(self.row) != len(self.ids):
            raise ArtifactError(f"store {directory} has duplicate passage ids")
        ids = self.columns.get("centroid_ids.bin")
        if ids is not None and (check_ids if check_ids is not None else ids.nbytes <= CHECK_IDS_AT_OPEN_BYTES):
            self.check_centroid_ids()

    def check_centroid_ids(self, chunk: int = 1 << 24) -> None:
        """Bounds-check every stored centroid id (in chunks of the memory map); :class:`ArtifactError`
        naming the first passages that hold an id out of range. A no-op for plain stores."""
        ids = self.columns.get("centroid_ids.bin")
        check = getattr(self.codec, "check_ids", None)
        if ids is None or check is None:
            return
        bad, rows = 0, list[int]()
        limit = len(self.codec.centroids)  # type: ignore[attr-defined]
        for a in range(0, len(ids), chunk):
            part = np.asarray(ids[a : a + chunk]).reshape(-1)
            found = check(part)
            if found:
                bad += found
                if len(rows) < 1000:
                    rows += (np.flatnonzero(part >= limit)[:1000] + a).tolist()
        if bad:
            passages = sorted({self.ids[int(i)] for i in np.searchsorted(self.offsets, np.asarray(rows), side="right") - 1})
            raise ArtifactError(
                f"store {self.directory} is damaged: {bad:,} centroid ids are out of range, in "
                f"passages {some(passages)}; rebuild it with 'reranker index'"
            )

    @classmethod
    def open(
        cls, directory: str | Path, artifact: ArtifactIdentity | None = None, *, verify_vectors: bool = False
    ) -> PassageStore:
        """Open and check a store (or a sharded store, as one): sizes of every file, sha256 of the
        small files and codec parameters (and of the vectors with ``verify_vectors``), and that it
        was built by ``artifact``.

        Raises :class:`ArtifactError` for a missing, truncated, corrupted or mismatched store.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"passage store {directory} does not exist; build it with 'reranker index'")
        small = SMALL_FILES + PARAM_FILES + PQ_FILES
        manifest = verify_manifest(directory, STORE_KIND, checksums=True if verify_vectors else small)
        if artifact is not None and manifest["artifact_sha256"] != artifact.checksum:
            raise ArtifactError(
                f"passage store {directory} was built for another artifact ({manifest['arch']} from "
                f"{manifest.get('artifact_path')}, passage encoder sha256 {manifest['artifact_sha256'][:12]}...), not for "
                f"{artifact.directory} (sha256 {artifact.checksum[:12]}...); rebuild it with 'reranker index'"
            )
        if "shards" in manifest:
            codec = load_codec(directory, manifest)
            shards = []
            for name in manifest["shards"]:
                if sha256_file(directory / name / "manifest.json") != manifest["shard_manifests_sha256"][name]:
                    raise ArtifactError(
                        f"shard {directory / name} does not match the sha256 its store's manifest records: rebuild the store"
                    )
                part = verify_manifest(directory / name, STORE_KIND, checksums=True if verify_vectors else SMALL_FILES)
                if part["artifact_sha256"] != manifest["artifact_sha256"]:
                    raise ArtifactError(f"shard {directory / name} was built for another artifact than {directory}")
                shards.append(cls(directory / name, part, codec, check_ids=False))
            if (
                sum(s.columns["centroid_ids.bin"].nbytes for s in shards if "centroid_ids.bin" in s.columns)
                <= CHECK_IDS_AT_OPEN_BYTES
            ):
                for shard in shards:  # the size rule holds for the store as a whole, not per shard
                    shard.check_centroid_ids()
            return ShardedPassageStore(directory, manifest, shards)  # type: ignore[return-value]
        return cls(directory, manifest)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid: object) -> bool:
        return pid in self.row

    def get(self, pid: str) -> np.ndarray:
        """(tokens, dim) state of one passage (tokens = 1 for BERT-dot): a view into the memory map
        for a plain store, decoded (float32) for a compressed one. KeyError for an unknown id."""
        i = self.row[pid]
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.codec.decode({name: col[a:b] for name, col in self.columns.items()})

    def get_many(self, pids: list[str]) -> list[np.ndarray]:
        """:meth:`get` of each id, decoded in one pass over all their rows (what a request needs)."""
        if self.vectors is not None:
            return [self.get(p) for p in pids]
        starts = np.array([self.offsets[self.row[p]] for p in pids], dtype=np.int64)
        ends = np.array([self.offsets[self.row[p] + 1] for p in pids], dtype=np.int64)
        lengths = ends - starts
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        gathered = {name: col[rows] for name, col in self.columns.items()}
        try:
            decoded = self.codec.decode(gathered)
        except StoreDamagedError as exc:
            check = self.codec.check_ids  # type: ignore[attr-defined]
            parts = np.split(gathered["centroid_ids.bin"], np.cumsum(lengths)[:-1])
            bad = [pid for pid, part in zip(pids, parts, strict=True) if check(part)]
            raise StoreDamagedError(
                f"passage store {self.directory.name} is damaged: {exc} in passage(s) "
                f"{some(bad)}; send their text instead, or rebuild the store "
                "('reranker store verify' checks every file)"
            ) from None
        return np.split(decoded, np.cumsum(lengths)[:-1])

    @property
    def scores_codes(self) -> bool:
        """:meth:`dots` works: the codec scores the request's rows without padding (the 1-bit residual
        from its bits, pq from its decoded rows)."""
        return bool(getattr(self.codec, "scores_codes", False))

    def token_rows(self, pids: list[str]) -> list[np.ndarray]:
        """Each passage's (tokens,) int64 rows in the per-token files (what :meth:`dots` reads).
        Raises KeyError for an unknown id and :class:`StoreDamagedError` (naming the passages) for
        a centroid id out of range."""
        spans = [(int(self.offsets[self.row[p]]), int(self.offsets[self.row[p] + 1])) for p in pids]
        rows = [np.arange(a, b, dtype=np.int64) for a, b in spans]
        ids = self.columns.get("centroid_ids.bin")
        if ids is not None and rows:
            limit = len(self.codec.centroids)  # type: ignore[attr-defined]
            if int(ids[np.concatenate(rows)].max(initial=0)) >= limit:
                bad = [p for p, r in zip(pids, rows, strict=True) if r.size and int(ids[r].max()) >= limit]
                raise StoreDamagedError(
                    f"passage store {self.directory.name} is damaged: centroid ids out of range in passage(s) "
                    f"{some(bad)}; send their text instead, or rebuild the store ('reranker store verify' checks every file)"
                )
        return rows

    def inverse_norms(self, chunk: int = 1 << 16) -> np.ndarray:
        """(tokens,) float32: the factor the codec's decode scales each stored vector by, computed
        once (a pass over the store in chunks: about a second per million tokens on 2 cores, 4 bytes
        a token of memory) and kept."""
        if self._inverse_norms is None:
            norms = getattr(self.codec, "inverse_norms")  # noqa: B009 (a residual codec's)
            tokens = int(self.offsets[-1]) if len(self.offsets) else 0
            out = np.empty(tokens, dtype=np.float32)
            for a in range(0, tokens, chunk):
                out[a : a + chunk] = norms({name: col[a : a + chunk] for name, col in self.columns.items()})
            self._inverse_norms = out
        return self._inverse_norms

    def dots(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(len(rows), query positions) float32 dot products of the stored vectors at ``rows`` (token
        rows, :meth:`token_rows`) with each row of ``q`` ((positions, dim)), equal to those of the
        decoded vectors, taken from the codes (needs :attr:`scores_codes`)."""
        gathered = {name: col[rows] for name, col in self.columns.items()}
        norms = self.inverse_norms()[rows] if self.precomputed_norms else None
        return self.codec.dots(q, gathered, norms)  # type: ignore[attr-defined]

    @property
    def precomputed_norms(self) -> bool:
        """:meth:`dots` reads :meth:`inverse_norms` (the 1-bit residual); a ``pq`` codec normalises
        the rows it decodes, so nothing is computed ahead."""
        return bool(getattr(self.codec, "precomputed_norms", True))

    def is_truncated(self, pid: str) -> bool:
        return bool(self.truncated[self.row[pid]])

    @property
    def nbytes(self) -> int:
        """Bytes of passage state (the memory-mapped per-token files of its codec)."""
        return int(self.offsets[-1]) * bytes_per_token(self.codec) if len(self.offsets) else 0

    @property
    def bytes_per_passage(self) -> float:
        return float(self.manifest["bytes_per_passage"])


class ShardedPassageStore:
    """Shards built apart (``reranker index --shards``), read as one store: the same methods as
    :class:`PassageStore`, each id answered by the shard that holds it (memory-mapped)."""

    vectors = None

    def __init__(self, directory: Path, manifest: dict[str, Any], shards: list[PassageStore]) -> None:
        self.directory, self.manifest, self.shards = directory, manifest, shards
        self.dim, self.dtype, self.codec = shards[0].dim, shards[0].dtype, shards[0].codec
        self.ids = [pid for shard in shards for pid in shard.ids]
        self.shard_of = {pid: k for k, shard in enumerate(shards) for pid in shard.ids}
        if len(self.shard_of) != len(self.ids) or len(self.ids) != int(manifest["passages"]):
            raise ArtifactError(f"store {directory}: its shards hold duplicate ids or disagree with its manifest")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid: object) -> bool:
        return pid in self.shard_of

    def get(self, pid: str) -> np.ndarray:
        return self.shards[self.shard_of[pid]].get(pid)

    def get_many(self, pids: list[str]) -> list[np.ndarray]:
        """:meth:`PassageStore.get_many` per shard, in the order of ``pids``."""
        out: list[np.ndarray | None] = [None] * len(pids)
        by_shard: dict[int, list[int]] = {}
        for i, pid in enumerate(pids):
            by_shard.setdefault(self.shard_of[pid], []).append(i)
        for k, where in by_shard.items():
            for i, state in zip(where, self.shards[k].get_many([pids[i] for i in where]), strict=True):
                out[i] = state
        return out  # type: ignore[return-value]

    def is_truncated(self, pid: str) -> bool:
        return self.shards[self.shard_of[pid]].is_truncated(pid)

    @property
    def nbytes(self) -> int:
        return sum(shard.nbytes for shard in self.shards)

    @property
    def bytes_per_passage(self) -> float:
        return float(self.manifest["bytes_per_passage"])
