"""Where a ColBERT request's time goes, and what scoring from the store's codes changes: quality and a
per-stage breakdown of the same requests on two paths of the same model and store.

    .venv/bin/python -m benchmarks.colbert_path --json benchmarks/results/colbert-path-cpu.json

Paths: ``codes`` (today: MaxSim from the store's 1-bit codes, one matrix product per query, a whole
request in one batch) and ``padded`` (before: the store decoded to float vectors, padded, the
exported scorer graph in batches of 16 pairs). Quality: nDCG@10 of re-ranking every DL19 query's BM25
top 100 by id through the engine (``LocalEngine``) on each path. Time: the stages of one request
alone (query encoding, store lookup, scoring) and the whole in-process request, paths interleaved
request by request. The default model and its DL19 store (``reranker serve`` builds them) unless
given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import DL19, percentile, run_facts, write_json
from reranker.data import DataFolder
from reranker.engine import BatcherConfig, EngineConfig, LocalEngine, ModelSpec, RuntimeConfig
from reranker.engine.served import Pair
from reranker.eval.metrics import evaluate_run
from reranker.provision import home

PATHS = ("codes", "padded")
STAGES = ("query_ms", "lookup_ms", "score_ms", "runs")


def _set(model, path: str) -> None:
    model.flat_maxsim = model.prepare.from_codes = path == "codes"
    model.batcher.cfg = model._batching[path]


def _stages(model, query: str, ids: list[str]) -> dict[str, float]:
    """Milliseconds of each stage of one request, run here in order (no batcher, no threads)."""
    prepare = model.prepare
    t0 = time.perf_counter()
    q = prepare.query(query)
    t1 = time.perf_counter()
    passages = prepare.passages(ids, [""] * len(ids), "max")
    t2 = time.perf_counter()
    pairs = [Pair(q, p, 0.0) for p in passages.items]
    size = model.batcher.cfg.max_batch_size
    for start in range(0, len(pairs), size):
        model.run_batch(pairs[start : start + size])
    t3 = time.perf_counter()
    runs = -(-len(pairs) // size)
    return {"query_ms": 1000 * (t1 - t0), "lookup_ms": 1000 * (t2 - t1), "score_ms": 1000 * (t3 - t2), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = home() / "default"
    ap.add_argument("--artifact", type=Path, default=cache / "onnx-fp32")
    ap.add_argument("--store", type=Path, default=cache / "store-fp32-residual1-trec-dl-2019")
    ap.add_argument("--data", type=Path, default=DL19)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    folder = DataFolder.open(args.data)
    run = folder.run("bm25")
    qids = sorted(q for q in run if q in folder.qrels)
    requests = {q: (folder.queries[q], [p for p, _ in run[q][: args.depth]]) for q in qids}
    cfg = EngineConfig(
        models=(ModelSpec("m", str(args.artifact), str(args.store)),),
        runtime=RuntimeConfig(provider="cpu"),
        batching=BatcherConfig(),
        cache_mb=0,
    )
    record: dict[str, object] = {**run_facts(), "queries": len(qids), "depth": args.depth}
    with LocalEngine(cfg) as local:
        model = local.engine.models["m"]
        import dataclasses

        model._batching = {"codes": model.batcher.cfg, "padded": dataclasses.replace(BatcherConfig(), max_wait_s=0.0)}
        quality = {}
        for path in PATHS:
            _set(model, path)
            ranked = {}
            for q, (text, ids) in requests.items():
                out = local.rerank(text, ids)
                ranked[q] = [(r.id, r.score) for r in out.results]
            quality[path] = round(evaluate_run(folder.qrels, ranked)["ndcg@10"], 4)
            print(f"colbert_path: {path}: nDCG@10 {quality[path]}", flush=True)
        times: dict[str, list[float]] = {p: [] for p in PATHS}
        stages: dict[str, list[dict[str, float]]] = {p: [] for p in PATHS}
        for _ in range(args.rounds):
            for text, ids in requests.values():
                for path in PATHS:
                    _set(model, path)
                    stages[path].append(_stages(model, text, ids))
                    started = time.perf_counter()
                    local.rerank(text, ids)
                    times[path].append(1000 * (time.perf_counter() - started))
    record["ndcg@10"] = quality
    record["paths"] = {
        path: {
            "request_p50_ms": round(percentile(times[path], 0.5), 2),
            "request_p90_ms": round(percentile(times[path], 0.9), 2),
            **{k: round(float(np.median([s[k] for s in stages[path]])), 2) for k in STAGES},
        }
        for path in PATHS
    }
    for path, r in record["paths"].items():  # type: ignore[union-attr]
        print(f"colbert_path: {path}: {r}")
    write_json(args.json, record)


if __name__ == "__main__":
    main()
