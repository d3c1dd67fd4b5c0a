"""Reading a built passage store (numpy only; no ONNX Runtime, no torch).

Layout of a store directory:

* ``vectors.bin``: one contiguous array (total tokens x dim) of fp16 (or fp32), raw;
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

from reranker.errors import ArtifactError
from reranker.manifest import verify_manifest

STORE_KIND = "reranker-passage-store"
STORE_DTYPES = ("float16", "float32")
SMALL_FILES = ("offsets.npy", "truncated.npy", "ids.txt")


class ArtifactIdentity(Protocol):
    """What a store checks of the artifact it is opened for (an :class:`reranker.artifact.Artifact`)."""

    @property
    def checksum(self) -> str: ...
    @property
    def directory(self) -> Path: ...


class PassageStore:
    """Read-only access to a built store."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory, self.manifest = directory, manifest
        self.ids = (directory / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
        self.offsets = np.load(directory / "offsets.npy")
        self.truncated = np.load(directory / "truncated.npy")
        self.dim = int(manifest["dim"])
        self.dtype = np.dtype(manifest["dtype"])
        tokens = int(self.offsets[-1]) if len(self.offsets) else 0
        consistent = (len(self.ids) == int(manifest["passages"]) == len(self.offsets) - 1
                      and tokens == int(manifest["tokens"]))
        if not consistent:
            raise ArtifactError(f"store {directory} is inconsistent: ids, offsets and manifest disagree")
        self.vectors = np.memmap(directory / "vectors.bin", dtype=self.dtype, mode="r", shape=(tokens, self.dim))
        self.row = {pid: i for i, pid in enumerate(self.ids)}
        if len(self.row) != len(self.ids):
            raise ArtifactError(f"store {directory} has duplicate passage ids")

    @classmethod
    def open(cls, directory: str | Path, artifact: ArtifactIdentity | None = None, *,
             verify_vectors: bool = False) -> PassageStore:
        """Open and check a store: sizes of every file, sha256 of the small files (and of the
        vectors with ``verify_vectors``), and that it was built by ``artifact``.

        Raises :class:`ArtifactError` for a missing, truncated, corrupted or mismatched store.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"passage store {directory} does not exist; build it with 'reranker index'")
        checked = SMALL_FILES + (("vectors.bin",) if verify_vectors else ())
        manifest = verify_manifest(directory, STORE_KIND, checksums=checked)
        if artifact is not None and manifest["artifact_sha256"] != artifact.checksum:
            raise ArtifactError(
                f"passage store {directory} was built for another artifact ({manifest['arch']} from "
                f"{manifest.get('artifact_path')}, passage encoder sha256 {manifest['artifact_sha256'][:12]}...), not for "
                f"{artifact.directory} (sha256 {artifact.checksum[:12]}...); rebuild it with 'reranker index'")
        return cls(directory, manifest)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid: object) -> bool:
        return pid in self.row

    def get(self, pid: str) -> np.ndarray:
        """(tokens, dim) state of one passage (tokens = 1 for BERT-dot): a view into the memory map."""
        i = self.row[pid]
        return self.vectors[self.offsets[i]:self.offsets[i + 1]]

    def is_truncated(self, pid: str) -> bool:
        return bool(self.truncated[self.row[pid]])

    @property
    def nbytes(self) -> int:
        """Bytes of passage state (the memory-mapped vectors)."""
        return int(self.vectors.nbytes)

    @property
    def bytes_per_passage(self) -> float:
        return float(self.manifest["bytes_per_passage"])
