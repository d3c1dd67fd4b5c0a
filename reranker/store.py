"""The passage store: precomputed passage states addressed by passage id, memory-mapped.

Layout of a store directory:

* ``vectors.bin``: one contiguous array (total tokens x dim) of fp16 (or fp32), raw;
* ``offsets.npy``: (passages + 1) int64 row offsets into it (one row per passage for BERT-dot);
* ``truncated.npy``: (passages,) bool, the text was cut to the model's passage length;
* ``ids.txt``: the passage ids, one per line, in row order;
* ``manifest.json``: the artifact it belongs to (sha256), shapes, dtype, sizes, checksums.

Opening a store reads the small files and memory-maps the vectors: start-up does not read the
whole store. Building is chunked and restartable: an interrupted build continues where it stopped,
and nothing that looks like a valid store exists until the build completes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reranker.artifact import Artifact
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import verify_manifest, write_manifest
from reranker.runtime.config import RuntimeConfig
from reranker.runtime.scorer import OnnxScorer

log = logging.getLogger(__name__)

STORE_KIND = "reranker-passage-store"
STORE_DTYPES = ("float16", "float32")
SMALL_FILES = ("offsets.npy", "truncated.npy", "ids.txt")


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
    def open(cls, directory: str | Path, artifact: Artifact | None = None, *, verify_vectors: bool = False) -> PassageStore:
        """Open and check a store: sizes of every file, sha256 of the small files (and of the
        vectors with ``verify_vectors``), and that it was built by ``artifact``."""
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
        """(tokens, dim) state of one passage: a view into the memory map."""
        i = self.row[pid]
        return self.vectors[self.offsets[i]:self.offsets[i + 1]]

    def is_truncated(self, pid: str) -> bool:
        return bool(self.truncated[self.row[pid]])

    @property
    def bytes_per_passage(self) -> float:
        return float(self.manifest["bytes_per_passage"])


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def build_store(artifact: Artifact, passages: Mapping[str, str], out: str | Path, *, dtype: str = "float16",
                chunk: int = 512, cfg: RuntimeConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Encode every passage once with the artifact's passage encoder and write a store to ``out``.

    Work goes to ``OUT.partial`` and is committed chunk by chunk; rerunning after an interruption
    continues from the last committed chunk. ``out`` appears only when the build is complete.
    """
    if artifact.arch == "bert_cat":
        raise ConfigError("bert_cat has no passage-side state to store; only split models use a store")
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
    scorer = OnnxScorer(artifact, cfg or RuntimeConfig(warmup=False))
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
                items = scorer.encode_texts([passages[p] for p in part])
                for item in items:
                    vec_f.write(np.ascontiguousarray(item.data, dtype=np_dtype).tobytes())
                len_f.write(np.array([it.length for it in items], dtype=np.int32).tobytes())
                tr_f.write(np.array([it.truncated for it in items], dtype=np.uint8).tobytes())
                for f in (vec_f, len_f, tr_f):
                    f.flush()
                    os.fsync(f.fileno())
                state["done"] += len(part)
                state["tokens"] += sum(it.length for it in items)
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
