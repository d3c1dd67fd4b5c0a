"""Effectiveness of each export precision on TREC DL 2019: nDCG@10 of PyTorch vs ONNX fp32/fp16/int8.

    .venv/bin/python -m studies.precision --model runs/full/colbert-L6-kd --json studies/precision/results/DATE-colbert.json

Re-ranks the BM25 top-100 of all 43 queries with each artifact (through the passage store for split
models) and reports the change against PyTorch.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from benchmarks._common import DL19, ensure_store, local_engine, write_json
from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.eval.irm import evaluate_with_ir_measures
from reranker.models.checkpoint import load_checkpoint
from reranker.training.inference import rerank
from reranker_export.onnx_export import export_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--int8-exclude", default=None, help="int8 nodes kept in fp32 (regex; see reranker export)")
    ap.add_argument(
        "--torch-json",
        type=Path,
        default=None,
        help="reuse the PyTorch figures of 'reranker evaluate --json' instead of re-ranking with torch",
    )
    ap.add_argument("--work", type=Path, default=None, help="where artifacts and stores go (default: MODEL/precision)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.work or args.model / "precision"
    folder = DataFolder.open(DL19)
    cands = {q: c[: args.depth] for q, c in folder.run("bm25").items()}
    qrels = folder.qrels
    results = {}
    if args.torch_json:
        results["torch fp32"] = {
            k: v
            for k, v in json.loads(args.torch_json.read_text()).items()
            if k in ("ndcg@10", "mrr@10", "recall@100", "queries")
        }
    else:
        loaded = load_checkpoint(args.model)
        torch_run = rerank(loaded, folder.queries, folder.passages, cands, progress=True)
        results["torch fp32"] = evaluate_with_ir_measures(qrels, torch_run, 2)
    for precision in args.precisions.split(","):
        art_dir = work / f"onnx-{precision}"
        if not (art_dir / "manifest.json").is_file():
            export_model(args.model, art_dir, precision=precision, int8_exclude=args.int8_exclude)
        artifact = Artifact.open(art_dir)
        store = None
        if artifact.spec.split:
            needed = sorted({p for c in cands.values() for p, _ in c})
            store = ensure_store(artifact, {p: folder.passages[p] for p in needed}, work / f"store-{precision}", progress=True)
        run = {}
        with local_engine(art_dir, store) as engine:
            for qid, c in cands.items():
                ids = [p for p, _ in c]
                texts = [""] * len(ids) if store is not None else [folder.passages[p] for p in ids]
                scores, _ = engine.scores(folder.queries[qid], ids, texts)
                run[qid] = sorted(zip(ids, scores, strict=True), key=lambda x: -x[1])
        results[f"ort {precision}" + (" (store fp16)" if store is not None else "")] = evaluate_with_ir_measures(qrels, run, 2)
    base = results["torch fp32"]["ndcg@10"]
    print(f"\nDL19 BM25 top-{args.depth}, {args.model}:\n| engine | nDCG@10 | change | MRR@10 |\n|---|---|---|---|")
    for name, m in results.items():
        print(f"| {name} | {m['ndcg@10']:.4f} | {m['ndcg@10'] - base:+.4f} | {m['mrr@10']:.4f} |")
    write_json(args.json, {"model": str(args.model), "results": results})


if __name__ == "__main__":
    main()
