"""ONNX Runtime intra-op spinning on or off (RuntimeConfig.allow_spinning), in process, interleaved
request by request: the teacher from text and ColBERT from its store (the latency benchmark's models).

    .venv/bin/python -m benchmarks.latency --quick      # builds the models once
    .venv/bin/python -m studies.spinning --teacher-rounds 8 --colbert-rounds 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks._common import DL19, ROOT
from reranker.data import DataFolder
from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="a benchmarks.latency model folder (default: the first)")
    ap.add_argument("--teacher-rounds", type=int, default=8)
    ap.add_argument("--colbert-rounds", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or sorted((ROOT / "runs/bench-latency").glob("minilm-*"))[0]
    store = next(d for d in sorted(work.glob("store-colbert-*")) if (d / "manifest.json").is_file())
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    qids = sorted(run)[:10]
    models = {
        "teacher": (work / "onnx-bert_cat-fp32", "", args.teacher_rounds),
        "colbert": (work / "onnx-colbert-fp32", str(store), args.colbert_rounds),
    }
    out = {}
    for name, (art, st, rounds) in models.items():
        engines = {
            s: LocalEngine(
                EngineConfig(
                    models=(ModelSpec("default", str(art), st),),
                    runtime=RuntimeConfig(provider="cpu", allow_spinning=s),
                    cache_mb=0,  # the same requests every round: measure the runtime, not the score cache
                )
            )
            for s in (True, False)
        }
        times: dict[bool, list[float]] = {True: [], False: []}
        for r in range(rounds + 1):
            q = qids[r % len(qids)]
            ids = [p for p, _ in run[q][:100]]
            texts = [""] * len(ids) if st else [folder.passages[p] for p in ids]
            for spin in (True, False) if r % 2 else (False, True):
                t = time.perf_counter()
                engines[spin].rerank(folder.queries[q], ids, texts)
                if r:
                    times[spin].append((time.perf_counter() - t) * 1000.0)
        for e in engines.values():
            e.close()
        out[name] = {
            "rounds": rounds,
            "spin_p50_ms": round(statistics.median(times[True]), 1),
            "no_spin_p50_ms": round(statistics.median(times[False]), 1),
            "paired_median_diff_ms": round(statistics.median(b - a for a, b in zip(times[True], times[False], strict=True)), 1),
        }
        print(name, out[name], flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
