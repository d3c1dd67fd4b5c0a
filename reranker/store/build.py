"""Building a passage store offline: encode every passage once and write it (see :mod:`.reader`).

The builder knows no ONNX: it is given ``encode``, a function from passage texts to their states
(:func:`reranker.engine.passage_encoder` gives the one serving uses, so stored states are exactly
what the engine would compute from text). Building is chunked and restartable: an interrupted
build continues where it stopped, and nothing that looks like a valid store exists until the
build completes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reranker.artifact import Artifact
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import write_manifest
from reranker.store.reader import SMALL_FILES, STORE_DTYPES, STORE_KIND

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], Sequence[tuple[np.ndarray, bool]]]
"""Passage texts -> one (tokens, dim) float state and a truncated flag per text, in order."""


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def build_store(artifact: Artifact, passages: Mapping[str, str], out: str | Path, *, encode: Encode,
                dtype: str = "float16", chunk: int = 512, progress: bool = True) -> dict[str, Any]:
    """Encode every passage once with ``encode`` (the artifact's passage encoder) and write a store
    to ``out``; returns the store's manifest.

    Work goes to ``OUT.partial`` and is committed chunk by chunk; rerunning after an interruption
    continues from the last committed chunk. ``out`` appears only when the build is complete.
    Raises :class:`ConfigError` for a model without passage state or no passages, and
    :class:`ArtifactError` when writing fails (a full disk, say).
    """
    if not artifact.spec.split:
        raise ConfigError(f"{artifact.arch} has no passage-side state to store; only split models use a store")
    if dtype not in STORE_DTYPES:
        raise ConfigError(f"store dtype must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}")
    if not passages:
        raise ConfigError("no passages to index")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    ids = list(passages)
    key = {"ids_sha256": _ids_digest(ids), "artifact_sha256": artifact.checksum, "dtype": dtype}
    state_path = partial / "progress.json"
    state = {"done": 0, "tokens": 0}
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if {k: saved.get(k) for k in key} == key:
            state = {"done": saved["done"], "tokens": saved["tokens"]}
            log.info("continuing the store build in %s at passage %d of %d", partial, state["done"], len(ids))
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    np_dtype = np.dtype(dtype)
    dim = int(artifact.manifest["state_dim"])
    files = {name: partial / name for name in ("vectors.bin", "lengths.bin", "truncated.bin")}
    sizes = {"vectors.bin": state["tokens"] * dim * np_dtype.itemsize, "lengths.bin": state["done"] * 4,
             "truncated.bin": state["done"]}
    try:
        for name, path in files.items():  # drop anything written after the last committed chunk
            with open(path, "ab") as f:
                f.truncate(sizes[name])
        with tqdm(total=len(ids), initial=state["done"], desc=f"indexing {artifact.arch}", unit="passage",
                  disable=not progress) as bar, open(files["vectors.bin"], "ab") as vec_f, \
                open(files["lengths.bin"], "ab") as len_f, open(files["truncated.bin"], "ab") as tr_f:
            while state["done"] < len(ids):
                part = ids[state["done"]: state["done"] + chunk]
                items = encode([passages[p] for p in part])
                for vectors, _ in items:
                    vec_f.write(np.ascontiguousarray(vectors, dtype=np_dtype).tobytes())
                len_f.write(np.array([vectors.shape[0] for vectors, _ in items], dtype=np.int32).tobytes())
                tr_f.write(np.array([truncated for _, truncated in items], dtype=np.uint8).tobytes())
                for f in (vec_f, len_f, tr_f):
                    f.flush()
                    os.fsync(f.fileno())
                state["done"] += len(part)
                state["tokens"] += sum(vectors.shape[0] for vectors, _ in items)
                tmp = state_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({**key, **state}))
                os.replace(tmp, state_path)
                bar.update(len(part))
        lengths = np.fromfile(files["lengths.bin"], dtype=np.int32)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(partial / "offsets.npy", offsets)
        truncated = np.fromfile(files["truncated.bin"], dtype=np.uint8).astype(bool)
        np.save(partial / "truncated.npy", truncated)
        (partial / "ids.txt").write_text("".join(p + "\n" for p in ids), encoding="utf-8")
        tokens = int(offsets[-1])
        vector_bytes = tokens * dim * np_dtype.itemsize
        info = {
            "arch": artifact.arch, "dim": dim, "dtype": dtype, "passages": len(ids), "tokens": tokens,
            "artifact_sha256": artifact.checksum, "artifact_path": str(artifact.directory.resolve()),
            "artifact_precision": artifact.precision, "passage_max_len": artifact.config.passage_max_len,
            "truncated_passages": int(truncated.sum()),
            "bytes_per_passage": round(vector_bytes / len(ids), 1),
            "bytes_per_token": dim * np_dtype.itemsize, "tokens_per_passage": round(tokens / len(ids), 2),
            "ids_sha256": key["ids_sha256"],
        }
        for name in ("lengths.bin", "truncated.bin", "progress.json"):
            (partial / name).unlink()
        write_manifest(partial, STORE_KIND, info, ("vectors.bin", *SMALL_FILES))
    except OSError as exc:
        raise ArtifactError(f"writing the passage store failed ({exc}); the unfinished build stays in {partial} "
                            "(not a valid store) and continues from its last chunk when rerun") from exc
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return json.loads((out / "manifest.json").read_text())
