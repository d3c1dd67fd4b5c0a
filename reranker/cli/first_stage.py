"""``reranker first-stage-lists`` and ``reranker ship-fusion``: validation lists of each first-stage
kind, and the fusion choice per kind written into a model (the work is :mod:`reranker.teachers.first_stage`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reranker.errors import RerankerError
from reranker.fusion import FIRST_STAGES, FusionRule


def cmd_first_stage_lists(args: argparse.Namespace) -> int:
    from reranker.cli.fusion import validation_split
    from reranker.data import DataFolder, write_run
    from reranker.teachers.first_stage import first_stage_lists

    folder = DataFolder.open(args.data)
    split, held = validation_split(args)
    queries = {q: t for q, t in folder.queries.items() if q in held and folder.qrels.get(q)}
    if not queries:
        raise RerankerError(f"no judged validation query of the {split} split is in {args.data}")
    kinds = args.kinds.split(",")
    runs = first_stage_lists(queries, folder.passages, kinds, depth=args.depth)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, run in runs.items():
        write_run(args.out / f"{kind}.run", run, tag=kind)
        print(f"{kind}: {len(run)} queries ({split} split of {folder.name}), top {args.depth} of {len(folder.passages)} passages")
    return 0


def cmd_ship_fusion(args: argparse.Namespace) -> int:
    from reranker.models.checkpoint import resolve_model_dir
    from reranker.teachers.first_stage import KIND_MEMBERS, ship_first_stage_fusion

    picks: dict[str, FusionRule] = {}
    how: dict[str, dict[str, object]] = {}
    for spec in args.pick:
        kind, _, path = spec.partition("=")
        try:
            record = json.loads(Path(path).read_text())
            picked = record["picked"]
            picks[kind] = FusionRule(picked["rule"], float(picked["weight"]), float(picked.get("rrf_k", 60.0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RerankerError(f"--pick {spec}: cannot read a pick-fusion record ({exc!r}); expected KIND=FILE") from exc
        how[kind] = {k: record.get(k) for k in ("data", "run", "depth", "split", "queries", "model_alone", "first_stage")}
        how[kind]["ndcg@10"] = picked.get("ndcg@10")
        how[kind]["retriever"] = KIND_MEMBERS.get(kind, "bm25s (reranker bm25 defaults)")
    config = ship_first_stage_fusion(resolve_model_dir(args.model), picks, how)
    for kind, rule in sorted((config.first_stage_fusion or {}).items()):
        print(f"{args.model}: behind a {kind} first stage, fuse with {rule}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the first-stage-lists and ship-fusion commands."""
    from reranker.cli.fusion import split_args

    p = sub.add_parser(
        "first-stage-lists",
        help="validation lists of each first-stage kind (BM25, dense mpnet, sparse SPLADE-tiny) over a pool",
        description="Retrieves the top --depth passages of --data's passages for the validation queries "
        "(the model's held-out queries, as pick-fusion) with BM25 (bm25s), mpnet cosine (dense) and "
        "SPLADE-tiny (sparse; benchmarks/teachers/setup.sh installs both) and writes OUT/KIND.run.",
    )
    p.add_argument("--model", default="default", metavar="SPEC", help="whose validation queries (default: default)")
    p.add_argument("--data", required=True, type=Path, help="a training pool folder holding the validation queries")
    p.add_argument("--kinds", default=",".join(FIRST_STAGES), help="comma-separated first-stage kinds")
    p.add_argument("--depth", type=int, default=100, help="passages per query")
    p.add_argument("--out", required=True, type=Path, help="folder for KIND.run")
    split_args(p)
    p.set_defaults(func=cmd_first_stage_lists)
    q = sub.add_parser(
        "ship-fusion",
        help="write the fusion choice per first-stage kind into a model (its config.json and manifest)",
        description="Records each pick-fusion choice as the model's fusion behind that kind of first stage; "
        "the server applies it to requests (or models) naming the kind, reranker evaluate with --first-stage.",
    )
    q.add_argument("--model", required=True, metavar="DIR", help="a model directory ('default': the shipped student)")
    q.add_argument("--pick", action="append", required=True, metavar="KIND=FILE", help="a pick-fusion --out record per kind")
    q.set_defaults(func=cmd_ship_fusion)
