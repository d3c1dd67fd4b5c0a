"""Store build throughput: passages per second per core, single process vs Ray (local cluster).

    .venv/bin/python -m benchmarks.build_throughput --artifact runs/c17/onnx-colbert --passages 384 \
        --json benchmarks/results/build-throughput-cpu.json

The same passages (the first N of DL19's BM25 top-100 pool) are built into a store twice per
round, alternating: by one process with one ONNX Runtime thread (1 core), and on a local Ray
cluster of ``--cpus`` CPUs with as many single-threaded encoder actors, in ``--cpus`` x 2 shards
(the cluster is started once, before timing). Codec: float16 (a fitted codec adds the same
sample-and-fit step to both).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks._common import DL19, Stopwatch, cpu_model, write_json
from reranker.artifact import Artifact
from reranker.cli.artifacts import cpu_encoder
from reranker.data import DataFolder
from reranker.engine import RuntimeConfig, passage_encoder
from reranker.store.build import build_store
from reranker.store.distributed import build_store_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, type=Path)
    ap.add_argument("--passages", type=int, default=384)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import ray

    artifact = Artifact.open(args.artifact)
    folder = DataFolder.open(DL19)
    pool = sorted({p for c in folder.run("bm25").values() for p, _ in c[:100]})[: args.passages]
    passages = {p: folder.passages[p] for p in pool}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    encode = passage_encoder(artifact, RuntimeConfig(provider="cpu", intra_op_threads=1))
    times: dict[str, list[float]] = {"single": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            with Stopwatch() as t:
                build_store(artifact, passages, Path(tmp) / "single", encode=encode, chunk=64, progress=False)
            times["single"].append(t.seconds)
            with Stopwatch() as t:
                build_store_ray(
                    args.artifact,
                    passages,
                    Path(tmp) / "ray",
                    shards=args.cpus * 2,
                    encoder=cpu_encoder,
                    actors=args.cpus,
                    ort_threads=1,
                    chunk=64,
                )
            times["ray"].append(t.seconds)
            for name in ("single", "ray"):
                shutil.rmtree(Path(tmp) / name)
    ray.shutdown()
    cores = {"single": 1, "ray": args.cpus}
    report = {
        "cpu": cpu_model(),
        "passages": len(passages),
        "arch": artifact.arch,
        "seconds": times,
        "passages_per_s_per_core": {k: round(len(passages) / min(v) / cores[k], 2) for k, v in times.items()},
    }
    print(json.dumps(report, indent=2))
    write_json(args.json, report)


if __name__ == "__main__":
    main()
