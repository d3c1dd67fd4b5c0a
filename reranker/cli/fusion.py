"""Fusion with the first stage: the evaluate options and the command that picks a rule's weight on the
validation split (the rule itself is :mod:`reranker.fusion`, shared with serving)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reranker.cli._common import model_scores, precision_arg, torch_args
from reranker.errors import RerankerError
from reranker.fusion import FIRST_STAGES, RULES, FusionRule, first_stage_rules, rule_for_first_stage


def fusion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fusion",
        choices=RULES,
        default="none",
        help="fuse the model's score with the run's first-stage score (see reranker/fusion.py): "
        "minmax / zscore interpolation of per-query normalised scores, rrf; none = model alone",
    )
    p.add_argument(
        "--fusion-weight",
        type=float,
        default=None,
        help="the re-ranker's share in [0, 1] (1 = model alone; default 0.5 with a rule)",
    )
    p.add_argument("--rrf-k", type=float, default=60.0, help="RRF rank offset (default 60)")
    p.add_argument(
        "--fusion-from", type=Path, default=None, help="use the rule and weight picked by 'reranker pick-fusion' (its --out JSON)"
    )
    p.add_argument(
        "--first-stage",
        choices=FIRST_STAGES,
        default=None,
        help="the kind of first stage that made --run: apply the model's shipped fusion choice for it "
        "(its config.json first_stage_fusion), as the server does for a request naming the kind",
    )
    p.add_argument(
        "--scores-from",
        type=Path,
        default=None,
        help="read the model's scores from a re-ranked run written by an earlier evaluate of the same "
        "model (--out-run / next to --json) instead of scoring again",
    )


def fusion_rule(args: argparse.Namespace) -> FusionRule:
    """The rule of ``--first-stage`` (the model's shipped choice), of ``--fusion-from`` (a pick-fusion
    record) or of ``--fusion`` / ``--fusion-weight`` / ``--rrf-k``."""
    if getattr(args, "first_stage", None):
        from reranker.config import ModelConfig
        from reranker.models.checkpoint import resolve_model_dir

        if args.fusion_from or args.fusion != "none":
            raise RerankerError("--first-stage applies the model's shipped fusion choice; leave out --fusion and --fusion-from")
        config = ModelConfig.load(resolve_model_dir(args.model) / "config.json")
        return rule_for_first_stage(first_stage_rules(config.first_stage_fusion), args.first_stage, str(args.model))
    if args.fusion_from:
        try:
            picked = json.loads(Path(args.fusion_from).read_text())["picked"]
        except (OSError, ValueError, KeyError) as exc:
            raise RerankerError(f"cannot read a picked fusion rule from {args.fusion_from}: {exc}") from exc
        return FusionRule(picked["rule"], picked["weight"], picked.get("rrf_k", 60.0))
    weight = args.fusion_weight if args.fusion_weight is not None else (0.5 if args.fusion != "none" else 1.0)
    return FusionRule(args.fusion, weight, args.rrf_k)


def validation_split(args: argparse.Namespace) -> tuple[str, set[str]]:
    """(description, query ids) of the split to pick on: the model's own held-out queries (its manifest)
    unless ``--split standard`` or it lists none, else the training split of ``--pool`` folders."""
    from reranker.data import Collection, validation_queries

    if args.split == "model" and args.model not in ("bm25", "run"):
        from reranker.manifest import read_manifest
        from reranker.models.checkpoint import CHECKPOINT_KIND, resolve_model_dir

        try:
            queries = set(read_manifest(resolve_model_dir(args.model), CHECKPOINT_KIND).get("validation_queries", []))
        except RerankerError:
            queries = set()
        if queries:
            return "model", queries
    split = f"standard (--val-fraction {args.val_fraction}, --val-seed {args.val_seed})"
    return split, validation_queries(Collection.open(args.pool or [args.data]).qrels, args.val_fraction, args.val_seed)


def cmd_pick_fusion(args: argparse.Namespace) -> int:
    from reranker.data import DataFolder
    from reranker.eval.reranking import candidates_of, pick_fusion

    folder = DataFolder.open(args.data)
    run_name, candidates = candidates_of(folder, args.run, args.depth)
    split, queries = validation_split(args)
    candidates = {q: c for q, c in candidates.items() if q in queries and folder.qrels.get(q)}
    if not candidates:
        raise RerankerError(
            f"no validation query of the {split} split has candidates in {run_name} and judgments "
            f"in {args.data}; pick on a folder that holds the validation queries"
        )
    choice = pick_fusion(folder, candidates, model_scores(args, folder, candidates), args.rules.split(","), args.step, args.rrf_k)
    print(
        f"validation: {len(choice.queries)} queries ({split} split) of {folder.name}, {run_name} top-{args.depth}; "
        f"nDCG@10 model alone {choice.model_alone:.4f}, first stage alone {choice.first_stage:.4f}"
    )
    for r, n in sorted(choice.grid, key=lambda g: -g[1])[:10]:
        print(f"  {r.describe():18s} {n:.4f}")
    picked = choice.picked
    print(
        f'picked {picked.describe()} ({choice.ndcg:.4f}); serve it with fusion = {{ rule = "{picked.rule}", '
        f"weight = {picked.weight:g} }} in [[models]], evaluate with --fusion-from {args.out}"
    )
    record = {
        "model": args.model,
        "data": str(args.data),
        "run": run_name,
        "depth": args.depth,
        "split": split,
        **choice.record(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def split_args(p: argparse.ArgumentParser) -> None:
    """The options of :func:`validation_split`."""
    p.add_argument(
        "--split",
        choices=("model", "standard"),
        default="model",
        help="model: the model's held-out queries when its manifest lists them; standard: the split of "
        "'reranker train' over --pool folders (default: --data)",
    )
    p.add_argument("--pool", action="append", type=Path, default=None, help="folders the standard split is drawn from")
    p.add_argument("--val-fraction", type=float, default=0.1, help="standard split fraction")
    p.add_argument("--val-seed", type=int, default=0, help="standard split seed")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the pick-fusion command."""
    p = sub.add_parser(
        "pick-fusion",
        help="pick a fusion rule and weight with the first stage on the validation split",
        description="Grid-searches the re-ranker's weight (0..1, --step) for each --rules rule by "
        "nDCG@10 on validation queries: the model's own held-out queries (its manifest's "
        "validation_queries) by default, never a test set. Ties go to the weight nearest "
        "0.5. Writes the choice for --fusion-from and the server config.",
    )
    p.add_argument("--model", required=True, metavar="SPEC", help="as in 'reranker evaluate'")
    p.add_argument("--data", required=True, type=Path, help="a folder holding validation queries, qrels, a run")
    p.add_argument("--run", default="bm25", help="run name in the folder, or a TREC run file (default: bm25)")
    p.add_argument("--depth", type=int, default=100, help="re-rank the top N candidates")
    p.add_argument("--rules", default="minmax,zscore,rrf", help="comma-separated rules to try")
    p.add_argument("--step", type=float, default=0.05, help="weight grid step")
    split_args(p)
    p.add_argument("--out", required=True, type=Path, help="JSON with the picked rule and the whole grid")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    p.add_argument("--rrf-k", type=float, default=60.0, help="RRF rank offset (default 60)")
    p.add_argument("--scores-from", type=Path, default=None, help="reuse the model's scores from a re-ranked run")
    torch_args(p)
    precision_arg(p)
    p.set_defaults(func=cmd_pick_fusion)
