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
from reranker.store.codec import PLAIN, Codec, PlainCodec, bytes_per_token, load_codec
from reranker.store.compress import CodecConfig, fit_codec, sample_positions
from reranker.store.reader import SMALL_FILES, STORE_DTYPES, STORE_KIND, PassageStore

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], Sequence[tuple[np.ndarray, bool]]]
"""Passage texts -> one (tokens, dim) float state and a truncated flag per text, in order."""


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def sample_codec(cfg: CodecConfig, ids: Sequence[str], passages: Mapping[str, str], encode: Encode, dim: int) -> Codec:
    """The codec of ``cfg`` fitted on the states of ``cfg.sample_passages`` evenly spaced passages of
    ``ids`` (encoded here); a plain codec needs no sample."""
    if not cfg.fitted:
        return PlainCodec(dim, cfg.name)
    picked = [ids[i] for i in sample_positions(len(ids), cfg.sample_passages)]
    sample = np.concatenate([np.asarray(v, dtype=np.float32) for v, _ in encode([passages[p] for p in picked])])
    log.info("fitting the %s store codec on %d vectors of %d passages", cfg.name, len(sample), len(picked))
    return fit_codec(cfg, sample)


def _fit(cfg: CodecConfig, ids: list[str], passages: Mapping[str, str], encode: Encode, dim: int, partial: Path) -> Codec:
    """The fitted codec of a build: loaded from ``partial`` when an interrupted build saved it, else
    fitted (:func:`sample_codec`) and saved there."""
    if not cfg.fitted:
        return PlainCodec(dim, cfg.name)
    if (partial / "codec.json").is_file():
        return load_codec(partial, {"dim": dim, "codec": json.loads((partial / "codec.json").read_text())})
    codec = sample_codec(cfg, ids, passages, encode, dim)
    codec.save(partial)
    tmp = partial / "codec.json.tmp"
    tmp.write_text(json.dumps(codec.describe()))
    os.replace(tmp, partial / "codec.json")
    return codec


def codec_digest(codec: Codec) -> str:
    """sha256 of a codec's description and parameters (what a shard's build is keyed on)."""
    digest = hashlib.sha256(json.dumps(codec.describe(), sort_keys=True).encode())
    for name in ("centroids", "cutoffs", "weights", "codebooks"):
        if hasattr(codec, name):
            digest.update(np.ascontiguousarray(getattr(codec, name)).tobytes())
    return digest.hexdigest()


def build_store(
    artifact: Artifact,
    passages: Mapping[str, str],
    out: str | Path,
    *,
    encode: Encode,
    dtype: str = "float16",
    codec: CodecConfig | None = None,
    shared_codec: Codec | None = None,
    chunk: int = 512,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Encode every passage once with ``encode`` (the artifact's passage encoder) and write a store
    to ``out`` with the codec ``codec`` (default: the vectors as they are, in ``dtype``); returns
    the store's manifest.

    A fitted codec (``residual``) is fitted first on ``codec.sample_passages`` evenly spaced
    passages. Work goes to ``OUT.partial`` and is committed chunk by chunk; rerunning after an
    interruption continues from the last committed chunk (with the codec fitted then).
    ``shared_codec``: a codec fitted elsewhere, used as it is and not written into this store (the
    shards of one store share their parent's; open them with it). ``on_progress(done, total)``
    runs after each committed chunk (an exception it raises stops the build, resumable). ``out``
    appears only when the build is complete. Raises :class:`ConfigError` for a model without
    passage state, an unknown codec or no passages, and :class:`ArtifactError` when writing fails.
    """
    if not artifact.spec.split:
        raise ConfigError(f"{artifact.arch} has no passage-side state to store; only split models use a store")
    if dtype not in STORE_DTYPES:
        raise ConfigError(f"store dtype must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}")
    cfg = codec or CodecConfig(dtype)
    if not passages:
        raise ConfigError("no passages to index")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    ids = list(passages)
    key = {
        "ids_sha256": _ids_digest(ids),
        "artifact_sha256": artifact.checksum,
        "codec": cfg.key() if shared_codec is None else codec_digest(shared_codec),
    }
    state_path = partial / "progress.json"
    state = {"done": 0, "tokens": 0}
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if {k: saved.get(k) for k in key} == key:
            state = {"done": saved["done"], "tokens": saved["tokens"]}
            log.info("continuing the store build in %s at passage %d of %d", partial, state["done"], len(ids))
        else:
            shutil.rmtree(partial)
    elif partial.exists():
        shutil.rmtree(partial)
    dim = int(artifact.manifest["state_dim"])
    if cfg.name == "pq" and dim % cfg.subspaces:  # before any passage is encoded
        raise ConfigError(f"pq sub-vectors must divide the store's {dim} dimensions, got {cfg.subspaces}")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        fitted = shared_codec or _fit(cfg, ids, passages, encode, dim, partial)
        params = () if shared_codec is not None else tuple(fitted.describe().get("param_files", ()))
        columns = {c.file: c for c in fitted.columns}
        files = {name: partial / name for name in (*columns, "lengths.bin", "truncated.bin")}
        sizes = {name: state["tokens"] * np.dtype(c.dtype).itemsize * c.width for name, c in columns.items()}
        sizes.update({"lengths.bin": state["done"] * 4, "truncated.bin": state["done"]})
        for name, path in files.items():  # drop anything written after the last committed chunk
            with open(path, "ab") as f:
                f.truncate(sizes[name])
        handles = {name: open(path, "ab") for name, path in files.items()}  # noqa: SIM115 (closed below)
        try:
            with tqdm(
                total=len(ids), initial=state["done"], desc=f"indexing {artifact.arch}", unit="passage", disable=not progress
            ) as bar:
                while state["done"] < len(ids):
                    part = ids[state["done"] : state["done"] + chunk]
                    items = encode([passages[p] for p in part])
                    lengths = np.array([vectors.shape[0] for vectors, _ in items], dtype=np.int32)
                    encoded = fitted.encode(np.concatenate([np.asarray(v).reshape(-1, dim) for v, _ in items]))
                    for name, c in columns.items():
                        handles[name].write(np.ascontiguousarray(encoded[name], dtype=c.dtype).tobytes())
                    handles["lengths.bin"].write(lengths.tobytes())
                    handles["truncated.bin"].write(np.array([t for _, t in items], dtype=np.uint8).tobytes())
                    for f in handles.values():
                        f.flush()
                        os.fsync(f.fileno())
                    state["done"] += len(part)
                    state["tokens"] += int(lengths.sum())
                    tmp = state_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({**key, **state}))
                    os.replace(tmp, state_path)
                    bar.update(len(part))
                    if on_progress is not None:
                        on_progress(state["done"], len(ids))
        finally:
            for f in handles.values():
                f.close()
        lengths = np.fromfile(files["lengths.bin"], dtype=np.int32)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(partial / "offsets.npy", offsets)
        truncated = np.fromfile(files["truncated.bin"], dtype=np.uint8).astype(bool)
        np.save(partial / "truncated.npy", truncated)
        (partial / "ids.txt").write_text("".join(p + "\n" for p in ids), encoding="utf-8")
        tokens = int(offsets[-1])
        per_token = bytes_per_token(fitted)
        info = {
            "arch": artifact.arch,
            "dim": dim,
            "dtype": fitted.name if fitted.name in PLAIN else "float32",
            "codec": fitted.describe(),
            "passages": len(ids),
            "tokens": tokens,
            "artifact_sha256": artifact.checksum,
            "artifact_path": str(artifact.directory.resolve()),
            "artifact_precision": artifact.precision,
            "passage_max_len": artifact.config.passage_max_len,
            "truncated_passages": int(truncated.sum()),
            "bytes_per_passage": round(tokens * per_token / len(ids), 1),
            "bytes_per_token": per_token,
            "tokens_per_passage": round(tokens / len(ids), 2),
            "codec_param_bytes": sum((partial / f).stat().st_size for f in params),
            "codec_shared": shared_codec is not None,
            "ids_sha256": key["ids_sha256"],
        }
        for name in ("lengths.bin", "truncated.bin", "progress.json", "codec.json"):
            (partial / name).unlink(missing_ok=True)
        write_manifest(partial, STORE_KIND, info, (*columns, *SMALL_FILES, *params))
    except OSError as exc:
        raise ArtifactError(
            f"writing the passage store failed ({exc}); the unfinished build stays in {partial} "
            "(not a valid store) and continues from its last chunk when rerun"
        ) from exc
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return json.loads((out / "manifest.json").read_text())


def recode_store(
    artifact: Artifact, source: str | Path, out: str | Path, *, codec: CodecConfig, chunk: int = 2048, progress: bool = True
) -> dict[str, Any]:
    """Write the store ``source`` (built for ``artifact``) again with another codec, without
    encoding any text: its decoded states are the input. Same ids, order and truncation flags.

    Raises :class:`ArtifactError` when ``source`` is not a valid store of ``artifact``.
    """
    src = PassageStore.open(source, artifact)
    stored = {pid: pid for pid in src.ids}

    def read(pids: Sequence[str]) -> list[tuple[np.ndarray, bool]]:
        return [
            (np.asarray(state, dtype=np.float32), src.is_truncated(p))
            for p, state in zip(pids, src.get_many(list(pids)), strict=True)
        ]

    return build_store(artifact, stored, out, encode=read, codec=codec, chunk=chunk, progress=progress)
