"""In-process latency per query: PyTorch vs ONNX Runtime (fp32, int8), from text vs from the store.

Requests are real: DL19 queries with their BM25 top-N candidates. Models are the architectures
initialised from all-MiniLM-L6-v2 (latency does not depend on training), or trained checkpoints
given with --model ARCH=DIR.

    .venv/bin/python -m benchmarks.runtime --queries 5 --json benchmarks/results/runtime-cpu.json

Prints a markdown table; every figure is the median over the queries after one warm-up query.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from benchmarks._common import DL19, ROOT, Stopwatch, cpu_model, ensure_store, local_engine, write_json
from reranker.arch import ARCHES, spec
from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.models.checkpoint import init_from_base, load_checkpoint, save_checkpoint
from reranker.store import PassageStore
from reranker.training.inference import score_pairs
from reranker_export.onnx_export import export_model


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }


def timed(fn, requests) -> list[float]:
    fn(*requests[0])  # warm-up
    out = []
    for req in requests[1:]:
        with Stopwatch() as t:
            fn(*req)
        out.append(t.ms)
    return out


def prepare(arch: str, work: Path, model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    ckpt = work / f"ckpt-{arch}"
    if not (ckpt / "manifest.json").is_file():
        torch.manual_seed(0)
        save_checkpoint(ckpt, init_from_base(arch, "minilm"), {"steps": 0, "note": "untrained, for latency only"})
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHES))
    ap.add_argument("--queries", type=int, default=5, help="timed queries (plus one warm-up)")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--torch-batch", type=int, default=16, help="PyTorch pairs per batch (length-sorted, as ORT)")
    ap.add_argument("--model", action="append", default=[], help="ARCH=DIR: a trained checkpoint instead of MiniLM init")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-runtime")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(torch.get_num_threads())
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    qids = sorted(run)[: args.queries + 1]
    requests = [(folder.queries[q], [p for p, _ in run[q][: args.candidates]]) for q in qids]
    needed = {p for _, pids in requests for p in pids}
    models = dict(spec.split("=", 1) for spec in args.model)
    records = []
    for arch in args.archs.split(","):
        ckpt = prepare(arch, args.work, models.get(arch))
        loaded = load_checkpoint(ckpt)
        texts = [(q, [folder.passages[p] for p in pids], pids) for q, pids in requests]

        def torch_query(q, passages, pids, loaded=loaded):
            # the same length-sorted batching as the ORT scorer, so the comparison is of the runtimes
            score_pairs(loaded, [q] * len(passages), passages, batch_size=args.torch_batch)

        rows = {"torch fp32 (text)": timed(torch_query, texts)}
        store_bytes: dict[str, float] = {}
        for precision in ("fp32", "int8"):
            art_dir = args.work / f"onnx-{arch}-{precision}"
            if not (art_dir / "manifest.json").is_file():
                export_model(ckpt, art_dir, precision=precision)
            artifact = Artifact.open(art_dir)
            with local_engine(art_dir) as engine:
                rows[f"ort {precision} (text)"] = timed(lambda q, p, ids, e=engine: e.rerank(q, ids, p), texts)
            if spec(arch).split:
                store_dir = ensure_store(
                    artifact, {p: folder.passages[p] for p in sorted(needed)}, args.work / f"store-{arch}-{precision}"
                )
                with local_engine(art_dir, store_dir) as engine:
                    rows[f"ort {precision} (store)"] = timed(lambda q, p, ids, e=engine: e.rerank(q, ids), texts)
                store_bytes[f"ort {precision} (store)"] = PassageStore.open(store_dir, artifact).bytes_per_passage
        for name, times in rows.items():
            p50 = statistics.median(times)
            records.append(
                {
                    "arch": arch,
                    "engine": name,
                    "candidates": args.candidates,
                    "queries": len(times),
                    "p50_ms": round(p50, 1),
                    "mean_ms": round(float(np.mean(times)), 1),
                    "pairs_per_s": round(args.candidates / (p50 / 1000.0), 1),
                    "store_bytes_per_passage": store_bytes.get(name),
                }
            )
            print(f"{arch:9s} {name:20s} p50 {p50:8.1f} ms/query  {args.candidates / (p50 / 1000):8.1f} pairs/s", flush=True)
    by = {(r["arch"], r["engine"]): r for r in records}
    ratios = {}
    for arch in args.archs.split(","):
        base = by.get((arch, "torch fp32 (text)"))
        if base:
            for (a, engine), r in by.items():
                if a == arch and engine != "torch fp32 (text)":
                    ratios[f"{arch}: {engine} vs torch"] = round(base["p50_ms"] / r["p50_ms"], 2)
    print("\n| arch | engine | p50 ms / query | pairs/s | speed-up vs torch |\n|---|---|---|---|---|")
    for r in records:
        ratio = ratios.get(f"{r['arch']}: {r['engine']} vs torch", 1.0)
        print(f"| {r['arch']} | {r['engine']} | {r['p50_ms']} | {r['pairs_per_s']} | {ratio:.2f}x |")
    write_json(args.json, {"machine": machine(), "records": records, "ratios": ratios})


if __name__ == "__main__":
    main()
