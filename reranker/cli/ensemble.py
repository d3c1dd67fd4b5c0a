"""``reranker ensemble``: a teacher ensemble from its members' runs or score files (the work is
:func:`reranker.eval.ensemble_files.build_ensemble`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_ensemble(args: argparse.Namespace) -> int:
    from reranker.eval.ensemble_files import RECORD_SUFFIX, build_ensemble

    result = build_ensemble(
        args.input,
        args.out,
        weights=args.weight,
        weights_from=args.weights_from,
        pick_step=args.pick_weights,
        data=args.data or (),
        val_fraction=args.val_fraction,
        val_seed=args.val_seed,
        normalize=args.normalize,
        scale=args.scale,
        scale_like=args.scale_like,
    )
    if result.validation:
        grid = result.validation["grid"]
        print(f"validation nDCG@10 of {result.validation['queries']} held-out queries, best weight vectors:")
        for row in grid[:8]:
            print(f"  {', '.join(f'{x:.2f}' for x in row['weights'])}  {row['ndcg@10']:.4f}")
        alone = {i: row["ndcg@10"] for row in grid for i, w in enumerate(row["weights"]) if w == 1.0}
        print("  members alone: " + ", ".join(f"{args.input[i]} {alone[i]:.4f}" for i in sorted(alone)))
    print(
        f"ensemble of {len(result.inputs)} {result.kind} files (weights {result.weights}, {result.normalize}, "
        f"scale {result.scale:.4g}) -> {result.out} (record: {result.out}{RECORD_SUFFIX})"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ensemble command."""
    p = sub.add_parser(
        "ensemble",
        help="a teacher ensemble: weighted mean of several models' runs or score files",
        description="Combines the scores several models gave the same (query, passage) pairs: "
        "per-query z-scores (default), a weighted mean, an optional scale. "
        "--pick-weights searches the weights on held-out training queries. (Combining a "
        "re-ranker with the first stage is fusion: see evaluate --fusion.)",
    )
    p.add_argument(
        "--in",
        dest="input",
        required=True,
        action="append",
        type=Path,
        help="a TREC run or a 'reranker score' file; repeat for each member",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the ensemble's file, in the inputs' format; OUT.ensemble.json records weights and settings",
    )
    p.add_argument("--weight", type=float, action="append", default=None, help="one per --in (default: equal)")
    p.add_argument("--normalize", choices=("zscore", "none"), default="zscore", help="per-query normalisation")
    p.add_argument(
        "--weights-from", type=Path, default=None, help="reuse the weights of an earlier ensemble (its OUT.ensemble.json)"
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply the ensemble's scores by this")
    p.add_argument(
        "--scale-like",
        type=int,
        default=None,
        help="scale to the mean per-query std of member N (1-based), e.g. the student's own start",
    )
    p.add_argument(
        "--pick-weights",
        type=float,
        default=None,
        metavar="STEP",
        help="grid-search weights (step STEP, e.g. 0.1) by nDCG@10 on the validation split",
    )
    p.add_argument("--data", action="append", type=Path, default=None, help="data folders (with --pick-weights)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation split (same as training)")
    p.add_argument("--val-seed", type=int, default=0, help="validation split seed (same as training)")
    p.set_defaults(func=cmd_ensemble)
