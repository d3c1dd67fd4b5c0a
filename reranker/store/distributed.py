"""Building a passage store on a Ray cluster (the optional ``cluster`` extra: ``pip install 'reranker[cluster]'``).

The passages are cut into contiguous shards; Ray Data hands the shards to actors, each holding
ONNX Runtime sessions of the artifact's passage encoder, and each actor writes its shard as a
complete store (:func:`reranker.store.build.build_store`) into ``OUT.partial/shards/``. A fitted
codec is fitted once, by the driver, on the same sample a single-process build uses, and shared
by every shard. A finished shard is never rebuilt and an unfinished one continues from its last
chunk, so a rerun resumes per shard. When every shard is done, the top manifest (codec
parameters, the shards, totals) is written and ``OUT`` appears; the server opens it as one store
(:meth:`reranker.store.PassageStore.open`). Every machine must see ``OUT`` at the same path
(a shared file system).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reranker.artifact import Artifact
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import sha256_file, write_manifest
from reranker.store.build import Encode, _ids_digest, build_store, sample_codec
from reranker.store.codec import PLAIN, Codec, load_codec
from reranker.store.compress import CodecConfig
from reranker.store.reader import STORE_KIND

log = logging.getLogger(__name__)

EncoderFactory = Callable[[Artifact, int], Encode]
"""(artifact, ONNX Runtime threads) -> its passage encoder, e.g. one from
:func:`reranker.engine.passage_encoder` (the store layer does not import the engine)."""


class _ShardBuilder:
    """A Ray actor: the artifact's passage encoder (ONNX Runtime sessions), kept across shards."""

    def __init__(self, artifact_dir: str, codec_dir: str, encoder: EncoderFactory, ort_threads: int) -> None:
        self.artifact = Artifact.open(artifact_dir)
        self.encode = encoder(self.artifact, ort_threads)
        info = json.loads((Path(codec_dir) / "codec.json").read_text())
        self.codec = load_codec(Path(codec_dir), {"dim": self.artifact.manifest["state_dim"], "codec": info})

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for out, ids, texts, chunk in zip(batch["out"], batch["ids"], batch["texts"], batch["chunk"], strict=True):
            t0 = time.perf_counter()
            shard = {str(pid): str(text) for pid, text in zip(ids, texts, strict=True)}
            m = build_store(
                self.artifact, shard, str(out), encode=self.encode, shared_codec=self.codec, chunk=int(chunk), progress=False
            )
            done.append({"out": str(out), "passages": m["passages"], "seconds": time.perf_counter() - t0})
        return {
            "out": [d["out"] for d in done],
            "passages": [d["passages"] for d in done],
            "seconds": [d["seconds"] for d in done],
        }


def build_store_ray(
    artifact_dir: str | Path,
    passages: Mapping[str, str],
    out: str | Path,
    *,
    shards: int,
    encoder: EncoderFactory,
    codec: CodecConfig | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    ort_threads: int = 1,
    chunk: int = 512,
    address: str | None = None,
) -> dict[str, Any]:
    """Build the store of ``passages`` for the artifact in ``artifact_dir`` as ``shards`` shards on
    Ray (``address``: a running cluster, None = start or join a local one) with ``actors`` encoder
    actors, each making its encoder with ``encoder``; returns the top manifest. The states equal a
    single-process build's (same encoder, same codec fitted on the same sample).

    Raises :class:`ConfigError` when Ray is missing or the arguments are out of range.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the Ray build needs the cluster extra (pip install 'reranker[cluster]')") from exc

    if shards < 1 or actors < 1 or not passages:
        raise ConfigError(
            f"a Ray build needs passages, shards >= 1 and actors >= 1, got {len(passages)} passages, "
            f"{shards} shards, {actors} actors"
        )
    artifact = Artifact.open(artifact_dir)
    cfg = codec or CodecConfig()
    out = Path(out).resolve()
    partial = out.with_name(out.name + ".partial")
    ids = list(passages)
    key = {"ids_sha256": _ids_digest(ids), "artifact_sha256": artifact.checksum, "codec": cfg.key(), "shards": shards}
    key_path = partial / "build.json"
    if partial.exists() and (not key_path.is_file() or json.loads(key_path.read_text()) != key):
        shutil.rmtree(partial)
    (partial / "shards").mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(key))
    dim = int(artifact.manifest["state_dim"])
    if not (partial / "codec.json").is_file():
        fitted: Codec = sample_codec(cfg, ids, passages, encoder(artifact, ort_threads), dim)
        fitted.save(partial)
        (partial / "codec.json").write_text(json.dumps(fitted.describe()))
    fitted = load_codec(partial, {"dim": dim, "codec": json.loads((partial / "codec.json").read_text())})
    bounds = [round(i * len(ids) / shards) for i in range(shards + 1)]
    names = [f"shards/{i:05d}" for i in range(shards)]
    todo = [i for i, name in enumerate(names) if not (partial / name / "manifest.json").is_file()]
    log.info("Ray build of %d passages in %d shards (%d to do) with %d actors", len(ids), shards, len(todo), actors)
    t0 = time.perf_counter()
    if todo:
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        rows = [
            {
                "out": str(partial / names[i]),
                "ids": ids[bounds[i] : bounds[i + 1]],
                "texts": [passages[p] for p in ids[bounds[i] : bounds[i + 1]]],
                "chunk": chunk,
            }
            for i in todo
        ]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        done = ds.map_batches(
            _ShardBuilder,
            batch_size=1,
            concurrency=actors,
            num_cpus=cpus_per_actor,
            fn_constructor_args=(str(artifact.directory.resolve()), str(partial), encoder, ort_threads),
        )
        for row in done.iter_rows():
            log.info("shard %s: %d passages in %.1f s", row["out"], row["passages"], row["seconds"])
    seconds = time.perf_counter() - t0
    parts = [json.loads((partial / name / "manifest.json").read_text()) for name in names]
    tokens = sum(int(p["tokens"]) for p in parts)
    per_token = int(parts[0]["bytes_per_token"])
    params = () if fitted.name in PLAIN else tuple(fitted.describe()["param_files"])
    info = {
        "arch": artifact.arch,
        "dim": dim,
        "dtype": parts[0]["dtype"],
        "codec": fitted.describe(),
        "passages": len(ids),
        "tokens": tokens,
        "shards": names,
        "shard_manifests_sha256": {n: sha256_file(partial / n / "manifest.json") for n in names},
        "artifact_sha256": artifact.checksum,
        "artifact_path": str(artifact.directory.resolve()),
        "artifact_precision": artifact.precision,
        "passage_max_len": artifact.config.passage_max_len,
        "truncated_passages": sum(int(p["truncated_passages"]) for p in parts),
        "bytes_per_passage": round(tokens * per_token / len(ids), 1),
        "bytes_per_token": per_token,
        "tokens_per_passage": round(tokens / len(ids), 2),
        "ids_sha256": key["ids_sha256"],
        "build": {
            "engine": "ray",
            "actors": actors,
            "cpus_per_actor": cpus_per_actor,
            "ort_threads": ort_threads,
            "shards_built_now": len(todo),
            "seconds_this_run": round(seconds, 1),
        },
    }
    try:
        for name in ("codec.json", "build.json"):
            (partial / name).unlink()
        write_manifest(partial, STORE_KIND, info, params)
    except OSError as exc:
        raise ArtifactError(f"writing the store manifest in {partial} failed: {exc}") from exc
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return json.loads((out / "manifest.json").read_text())
