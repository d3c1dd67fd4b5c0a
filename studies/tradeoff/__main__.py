"""The efficiency-effectiveness trade-off: latency (from benchmarks/latency.py) joined with
effectiveness (from `reranker evaluate --json`), one table and one plot.

    .venv/bin/python -m studies.tradeoff --latency benchmarks/results/latency.json \\
        --eval teacher=runs/bert_cat/trec-dl-2019-bm25.json \\
        --eval colbert=runs/colbert-L6-kd/trec-dl-2019-bm25.json --bm25 runs/first-stage/trec-dl-2019-bm25.json \\
        --teacher teacher --out studies/tradeoff/results/DATE-tradeoff

Writes OUT.md (table) and OUT.png (latency for 100 candidates on a log axis vs nDCG@10).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", required=True, type=Path, help="JSON written by benchmarks/latency.py")
    ap.add_argument(
        "--eval",
        action="append",
        default=[],
        help="MODEL=FILE: 'reranker evaluate --json' of a served model "
        "(or MODEL=FILE#ENGINE: one engine of a studies.precision result)",
    )
    ap.add_argument(
        "--heldout",
        action="append",
        default=[],
        help="MODEL=FILE: its 'reranker evaluate --json' on the held-out set (TREC DL 2021), a second column",
    )
    ap.add_argument("--store", action="append", default=[], help="MODEL=DIR: its passage store (storage per passage)")
    ap.add_argument("--bm25", type=Path, default=None, help="'reranker evaluate --model bm25 --json' result")
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        help="NAME=FILE: an evaluate result without a latency of its own, drawn as a dotted line",
    )
    ap.add_argument("--teacher", default="teacher", help="name of the BERT-cat teacher among the models")
    ap.add_argument(
        "--phase",
        choices=("interleaved", "cells"),
        default="interleaved",
        help="p50 from the interleaved phase (where a model has one) or from the closed-loop cells",
    )
    ap.add_argument(
        "--alias",
        action="append",
        default=[],
        help="NAME=MODEL: NAME's latency is the record of served model MODEL (same shapes)",
    )
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = ap.parse_args()
    latency = json.loads(args.latency.read_text())
    lat = {
        r["model"]: r for r in latency["records"] if r["candidates"] == args.candidates and r["concurrency"] == args.concurrency
    }
    if args.phase == "interleaved":  # the rounds that saw every model under the same load
        for model, row in latency.get("interleaved", {}).items():
            if model in lat and row.get("candidates", 100) == args.candidates:
                lat[model] = {**lat[model], "p50_ms": row["grpc_p50_ms"]}
    for name, model in (a.split("=", 1) for a in args.alias):
        if model in lat:
            lat[name] = lat[model]
    evals = {}
    for spec in args.eval:  # NAME=FILE, or NAME=FILE#ENGINE for a studies/precision/__main__.py result
        name, path = spec.split("=", 1)
        path, _, engine = path.partition("#")
        data = json.loads(Path(path).read_text())
        evals[name] = data["results"][engine] if engine else data
    given = [*(e.split("=", 1)[1] for e in args.heldout), *(str(Path(e.split("=", 1)[1]) / "manifest.json") for e in args.store)]
    missing = [p for p in given if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"missing inputs (a driver must not skip them silently): {', '.join(missing)}")
    heldout = {name: json.loads(Path(path).read_text()) for name, path in (e.split("=", 1) for e in args.heldout)}
    stores = {
        name: json.loads((Path(d) / "manifest.json").read_text())["bytes_per_passage"]
        for name, d in (e.split("=", 1) for e in args.store)
    }
    rows = []
    for name, ev in evals.items():
        r = lat.get(name)
        arch = r["arch"] if r else name.rsplit("-L", 1)[0]
        rows.append(
            {
                "model": name,
                "arch": arch,
                "ndcg@10": ev["ndcg@10"],
                "mrr@10": ev["mrr@10"],
                "heldout_ndcg@10": heldout[name]["ndcg@10"] if name in heldout else None,
                "p50_ms": r["p50_ms"] if r else None,
                "bytes_per_passage": stores.get(name),
            }
        )
    teacher = lat.get(args.teacher)
    lines = [
        f"| model | arch | DL19 nDCG@10 | DL19 MRR@10 | DL21 nDCG@10 | p50 ms ({args.candidates} cand.) "
        "| latency vs teacher | storage per passage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda x: -(x["p50_ms"] or 0)):
        ratio = f"{row['p50_ms'] / teacher['p50_ms']:.3f}x" if teacher and row["p50_ms"] else "-"
        size = f"{row['bytes_per_passage'] / 1024:.1f} KiB" if row["bytes_per_passage"] else "-"
        held = f"{row['heldout_ndcg@10']:.4f}" if row["heldout_ndcg@10"] is not None else "-"
        lines.append(
            f"| {row['model']} | {row['arch']} | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} | {held} | "
            f"{row['p50_ms'] if row['p50_ms'] is not None else '-'} | {ratio} | {size} |"
        )
    bm = json.loads(args.bm25.read_text()) if args.bm25 else None
    if bm:
        lines.append(f"| BM25 (first stage) | - | {bm['ndcg@10']:.4f} | {bm['mrr@10']:.4f} | - | 0 | - | - |")
    references = {name: json.loads(Path(path).read_text()) for name, path in (r.split("=", 1) for r in args.reference)}
    for name, ref in references.items():
        lines.append(f"| {name} | - | {ref['ndcg@10']:.4f} | {ref['mrr@10']:.4f} | - | - | - | - |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "teacher": args.teacher, "candidates": args.candidates}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        if row["p50_ms"] is None:
            continue
        is_teacher = row["model"] == args.teacher
        ax.scatter(
            row["p50_ms"],
            row["ndcg@10"],
            s=70,
            marker="*" if is_teacher else "o",
            color="crimson" if is_teacher else "tab:blue",
            zorder=3,
        )
        ax.annotate(row["model"], (row["p50_ms"], row["ndcg@10"]), textcoords="offset points", xytext=(6, 4), fontsize=9)
    for name, ref in references.items():
        value = ref["ndcg@10"]
        ax.axhline(value, color="crimson", ls=":", lw=1, label=f"{name} ({value:.3f})")
    if bm:
        ax.axhline(bm["ndcg@10"], color="gray", ls="--", lw=1, label="BM25 (no re-ranking)")
    if bm or references:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per query, {args.candidates} candidates (ms, log scale)")
    ax.set_ylabel("nDCG@10, TREC DL 2019 (BM25 top-100 re-ranked)")
    ax.set_title("Efficiency vs effectiveness")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
