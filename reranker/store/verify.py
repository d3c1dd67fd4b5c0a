"""Checking a passage store in full (numpy only): what ``reranker store verify`` and a server's
``verify_stores`` setting run. Opening a store checks what is cheap (sizes, the small files, the
codec's tables, centroid ids up to 256 MiB); this reads every byte."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reranker.errors import ArtifactError, some
from reranker.store.reader import PassageStore


@dataclass(frozen=True)
class StoreReport:
    """What :func:`verify_store` found in a store that passed."""

    directory: str
    passages: int
    tokens: int
    codec: str
    files: int
    """Files whose sha256 matched the manifest."""
    bytes: int
    """Bytes of passage state read."""


def verify_store(directory: str | Path, chunk: int = 1 << 20) -> StoreReport:
    """Check every file's sha256 against the manifest, every centroid id's range, and that every
    stored vector of a plain store is finite.

    Raises :class:`ArtifactError` naming what is damaged (for vectors: the first passages that hold
    NaN or infinity).
    """
    store = PassageStore.open(directory, verify_vectors=True)
    parts = getattr(store, "shards", [store])
    tokens = 0
    for part in parts:
        part.check_centroid_ids()
        vectors = part.vectors
        tokens += int(part.offsets[-1]) if len(part.offsets) else 0
        if vectors is None:
            continue
        bad_rows: list[int] = []
        for start in range(0, len(vectors), chunk):
            rows = np.asarray(vectors[start : start + chunk])
            finite = np.isfinite(rows).all(axis=1)
            if not finite.all():
                bad_rows += (np.flatnonzero(~finite) + start)[:1000].tolist()
        if bad_rows:
            owners = np.searchsorted(part.offsets, np.asarray(bad_rows), side="right") - 1
            passages = sorted({part.ids[int(i)] for i in owners})
            raise ArtifactError(
                f"store {part.directory} is damaged: {len(bad_rows):,}+ token vectors are NaN or "
                f"infinite, in passages {some(passages)}; rebuild it with 'reranker index'"
            )
    files = len(store.manifest.get("files", {})) + sum(len(p.manifest.get("files", {})) for p in parts if p is not store)
    return StoreReport(str(directory), len(store), tokens, store.codec.name, files, store.nbytes)
