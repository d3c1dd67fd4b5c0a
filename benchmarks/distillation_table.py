"""The distillation results of benchmarks/reproduce.sh as one table, laid out like the paper's:
per student, no distillation (RankNet on labels) and Margin-MSE side by side, on DL19 re-ranking
the BM25, TAS-B and SPLADE top-100 lists, with the teacher and the zero-shot starts above.

    .venv/bin/python benchmarks/distillation_table.py --runs runs/full \\
        [--latency benchmarks/results/latency-tradeoff-cpu.json] --out benchmarks/results/distillation

Writes OUT.md and OUT.json (every figure, with the file it came from).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

LISTS = ("bm25", "tasb", "splade")
# teacher members by run folder: table label, latency record name
MEMBERS = {"teacher": ("BERT-cat, RankNet on labels", "bert_cat-L6"),
           "zs-colbert": ("zero-shot MiniLM as ColBERT, MaxSim (L6 students' start)", "colbert-L6"),
           "zs-dot": ("zero-shot MiniLM as BERT-dot, cosine", ""),
           "colbert-labels": ("ColBERT, RankNet on labels, seed 11", "colbert-L6")}
NAMES = {"colbert": "ColBERT", "bert_dot": "BERT-dot", "tk": "TK", "prett": "PreTT", "bert_cat": "BERT-cat"}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(result: dict[str, Any] | None, key: str) -> str:
    return f"{result[key]:.3f}" if result else "-"


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def _steps(model_dir: Path) -> str:
    manifest = _load(model_dir / "manifest.json")
    return str(manifest.get("steps", "-")) if manifest else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/full"))
    ap.add_argument("--latency", type=Path, default=None,
                    help="benchmarks/latency.py JSON whose model names are ARCH-L<layers> (p50, 100 candidates)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distillation"))
    args = ap.parse_args()
    runs = args.runs
    lat: dict[str, float] = {}
    if args.latency and args.latency.is_file():
        for r in json.loads(args.latency.read_text())["records"]:
            if r["candidates"] == 100 and r["concurrency"] == 1:
                lat[r["model"]] = r["p50_ms"]

    record: dict[str, Any] = {"runs": str(runs), "reference": {}, "students": []}
    lines = ["**Teacher and references** (DL19, 43 queries: nDCG@10 / MRR@10 re-ranking each list's top 100; "
             "validation: nDCG@10 on 30 held-out training queries)", "",
             "| model | steps | validation | " + " | ".join(f"{x} nDCG@10 | {x} MRR@10" for x in LISTS)
             + " | p50 ms, 100 cand. |", "|---" * (3 + 2 * len(LISTS) + 1) + "|"]
    fusion = _load(runs / "teacher-scores.tsv.fusion.json")
    members = [Path(p).name.removeprefix("scores-").removesuffix(".tsv") for p in fusion["inputs"]] if fusion else []
    refs = [("first stage (no re-ranking)", None, runs / "first-stage", "")]
    for i, member in enumerate(members):
        label, lat_key = MEMBERS.get(member, (member, ""))
        refs.append((f"{label} (teacher member, weight {fusion['weights'][i]:.1f})", runs / member, runs / member,
                     lat_key))
    refs.append(("**ensemble teacher** (z-score mean of the members)", None, runs / "ensemble", ""))
    for name, model_dir, folder, lat_key in refs:
        results = {x: _load(folder / f"dl19-{x}.json") for x in LISTS}
        val = None
        if model_dir:
            val = _load(model_dir / "validation.json") or (_load(model_dir / "manifest.json") or {}).get("best_validation")
        if name.startswith("**ensemble") and fusion:
            best = fusion.get("validation", {}).get("grid", [{}])[0]
            val = {"ndcg@10": best["ndcg@10"]} if best else None
            name += " †"
        record["reference"][name] = {"results": results, "validation": val}
        cells = [f"{_fmt(results[x], 'ndcg@10')} | {_fmt(results[x], 'mrr@10')}" for x in LISTS]
        steps = _steps(model_dir) if model_dir else "-"
        lines.append(f"| {name} | {steps} | {_fmt(val, 'ndcg@10')} | " + " | ".join(cells)
                     + f" | {_ms(lat.get(lat_key)) if lat_key else '-'} |")

    first = {x: _load(runs / "first-stage" / f"dl19-{x}.json") for x in LISTS}
    lines += ["", "† validation of the ensemble: the weight search's figure, nDCG@10 of the teacher-scored "
              "top-30 pairs of all 68 held-out queries (`reranker fuse --pick-weights`), not the 30-query BM25 top 100.",
              "", "R@100 is the first stage's (re-ranking the top 100 cannot change it): "
              + ", ".join(f"{x} {_fmt(first[x], 'recall@100')}" for x in LISTS) + ".", "",
              "**Students: no distillation (RankNet on labels) vs Margin-MSE on the ensemble teacher's scores** "
              "(same data pool, steps, seed and learning rate; DL19 re-ranking each list's top 100)", "",
              "| student | layers | steps | validation no-KD | Margin-MSE | BM25 nDCG@10 no-KD | Margin-MSE "
              "| BM25 MRR@10 no-KD | Margin-MSE | TAS-B nDCG@10 no-KD | Margin-MSE "
              "| SPLADE nDCG@10 no-KD | Margin-MSE | p50 ms, 100 cand. |", "|---" * 14 + "|"]
    for d in sorted(runs.glob("*-L*-kd")):
        arch, layers = d.name.rsplit("-", 2)[0], d.name.rsplit("-", 2)[1][1:]
        twin = runs / f"{arch}-L{layers}-nokd"
        kd = {x: _load(d / f"dl19-{x}.json") for x in LISTS}
        nokd = {x: _load(twin / f"dl19-{x}.json") for x in LISTS}
        val_kd = (_load(d / "manifest.json") or {}).get("best_validation")
        val_nokd = (_load(twin / "manifest.json") or {}).get("best_validation")
        record["students"].append({"arch": arch, "layers": int(layers), "kd": kd, "nokd": nokd,
                                   "validation_kd": val_kd, "validation_nokd": val_nokd, "steps": _steps(d)})

        def pair(key: str, x: str, kd: dict = kd, nokd: dict = nokd) -> str:
            a, b = nokd[x], kd[x]
            mark = " ↑" if a and b and b[key] > a[key] else ""
            return f"{_fmt(a, key)} | {_fmt(b, key)}{mark}"

        lines.append(f"| {NAMES.get(arch, arch)} | {layers} | {_steps(d)} | {_fmt(val_nokd, 'ndcg@10')} | "
                     f"{_fmt(val_kd, 'ndcg@10')} | {pair('ndcg@10', 'bm25')} | {pair('mrr@10', 'bm25')} | "
                     f"{pair('ndcg@10', 'tasb')} | {pair('ndcg@10', 'splade')} | {_ms(lat.get(f'{arch}-L{layers}'))} |")
    lines.append("")
    lines.append("↑: Margin-MSE above its no-distillation twin. MRR@10 and R@100 count grade >= 2 as relevant. "
                 "p50: benchmarks/latency.py over gRPC, one client, split models reading passages from the store.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
