"""``reranker calibrate``: Platt scaling of a model's scores fitted on validation queries, measured
(expected calibration error, Brier score) on test sets, optionally shipped in the model's config
(the work is :mod:`reranker.eval.calibration`; the mapping served is :mod:`reranker.calibration`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reranker.cli._common import model_scores, precision_arg, torch_args
from reranker.errors import RerankerError


def cmd_calibrate(args: argparse.Namespace) -> int:
    from reranker.cli.fusion import validation_split
    from reranker.data import DataFolder
    from reranker.eval.calibration import fit_platt, judged, measure
    from reranker.eval.metrics import rel_level_for
    from reranker.eval.reranking import candidates_of, scores_from_run
    from reranker.models.checkpoint import resolve_model_dir
    from reranker.tokenization import Tokenizer

    tokenizer = Tokenizer.from_dir(resolve_model_dir(args.model))
    folder = DataFolder.open(args.data)
    _, candidates = candidates_of(folder, args.run, args.depth)
    split, held = validation_split(args)
    candidates = {q: c for q, c in candidates.items() if q in held and folder.qrels.get(q)}
    if not candidates:
        raise RerankerError(f"no judged validation query of the {split} split has candidates in {args.run}")

    def tokens_of(f: DataFolder):
        return lambda q: len(tokenizer.word_pieces([f.queries[q]])[0])

    val = judged(candidates, model_scores(args, folder, candidates), folder.qrels, rel_level_for(folder.qrels), tokens_of(folder))
    cal = fit_platt(val, args.per_query_token)
    record = {"model": args.model, "fitted_on": {"data": str(args.data), "run": args.run, "split": split, **cal.to_dict()}}
    record["validation"] = measure(cal, val)
    for spec in args.test:
        data, _, rest = spec.partition(":")
        run, _, scores_file = rest.partition(":")
        test = DataFolder.open(data)
        _, cands = candidates_of(test, run, args.depth)
        pairs = [(q, p) for q, cs in cands.items() for p, _ in cs]
        scores = scores_from_run(Path(scores_file), pairs) if scores_file else model_scores(args, test, cands)
        record[f"{test.name}:{run}"] = measure(cal, judged(cands, scores, test.qrels, rel_level_for(test.qrels), tokens_of(test)))
    for name, m in ((k, v) for k, v in record.items() if isinstance(v, dict) and "ece" in v):
        print(
            f"{name}: ECE {m['ece']:.4f}  Brier {m['brier']:.4f}  precision at 0.5 {m['precision_at_0.5']}  ({m['pairs']} pairs)"
        )
    print(f"calibration: a {cal.a:.4g}, b {cal.b:.4g}, per query token {cal.per_query_token}")
    if args.ship:
        from reranker.models.amend import amend_model_config

        amend_model_config(resolve_model_dir(args.model), {"calibration": cal.to_dict()}, "calibration", record["fitted_on"])
        print(f"shipped in {resolve_model_dir(args.model)}/config.json")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the calibrate command."""
    from reranker.cli.fusion import split_args

    p = sub.add_parser(
        "calibrate",
        help="fit P(relevant) of a model's scores on validation queries (Platt), measure it, ship it",
        description="Fits Platt scaling of --model's scores on the judged candidates of the validation "
        "queries (the model's held-out split, as pick-fusion) and reports expected calibration error "
        "(10 bins) and Brier score there and on each --test DATA:RUN[:SCORES_RUN]. --ship writes it "
        "into the model's config.json: the server then returns relevance beside score.",
    )
    p.add_argument("--model", required=True, metavar="SPEC", help="a model directory or 'default'")
    p.add_argument("--data", required=True, type=Path, help="a folder holding the validation queries")
    p.add_argument("--run", default="bm25", help="the candidates to score (run name or file)")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--scores-from", type=Path, default=None, help="the model's scores of --run (a re-ranked run)")
    p.add_argument("--per-query-token", action="store_true", help="fit on score / query word pieces (MaxSim)")
    p.add_argument("--test", action="append", default=[], metavar="DATA:RUN[:SCORES]", help="measure on a test set")
    p.add_argument("--ship", action="store_true", help="write the calibration into the model's config.json")
    p.add_argument("--out", type=Path, default=None, help="the record as JSON")
    p.add_argument("--batch-size", type=int, default=64)
    split_args(p)
    torch_args(p)
    precision_arg(p)
    p.set_defaults(func=cmd_calibrate)
