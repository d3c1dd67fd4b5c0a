"""Data commands: training triples from candidate lists, BM25 candidates for queries without a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reranker.cli._common import data_arg
from reranker.errors import RerankerError


def cmd_triples(args: argparse.Namespace) -> int:
    from reranker.data import Collection, all_pairs_triples, labelled_triples, write_triples

    collection = Collection.open(args.data)
    if args.all_pairs:
        triples = all_pairs_triples(collection, args.run, depth=args.depth, max_per_query=args.max_per_query, seed=args.seed)
    else:
        triples = labelled_triples(collection, args.run, max_per_query=args.max_per_query, seed=args.seed)
    if not triples:
        raise RerankerError(
            "no triples could be made: do the folders have judgments (for --labelled) and candidates for the run?"
        )
    write_triples(args.out, triples)
    queries = len({t.qid for t in triples})
    print(f"wrote {len(triples)} triples of {queries} queries to {args.out}")
    return 0


def cmd_bm25(args: argparse.Namespace) -> int:
    from reranker.data import Collection, DataFolder
    from reranker.data.bm25 import BM25Config, bm25_run, config_record, normalise_query, write_candidate_folder

    cfg = BM25Config(k1=args.k1, b=args.b, depth=args.depth, stemmer=args.stemmer)
    queries = DataFolder.open(args.queries).queries
    pool = Collection.open(args.pool).passages
    held: set[str] = set()
    for folder in [*args.pool, *(args.exclude or [])]:
        other = DataFolder.open(folder).queries  # read once: ids and normalised texts
        held |= set(other) | {normalise_query(t) for t in other.values()}
    kept = {q: t for q, t in queries.items() if q not in held and normalise_query(t) not in held}
    if args.max_queries:
        kept = dict(sorted(kept.items())[: args.max_queries])
    run = bm25_run(kept, pool, cfg)
    info = {
        **config_record(cfg),
        "queries_from": str(args.queries),
        "pool": [str(p) for p in args.pool],
        "excluded_folders": [str(p) for p in args.exclude or []],
        "queries_dropped_as_held_out": len(queries) - len(kept) if not args.max_queries else None,
        "command": " ".join(["reranker", *sys.argv[1:]]),
    }
    m = write_candidate_folder(args.out, kept, pool, run, info)
    print(f"BM25 top-{cfg.depth} of {m['queries']} queries over {len(pool)} passages ({m['passages']} retrieved) -> {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the triples and bm25 commands."""
    p = sub.add_parser(
        "triples",
        help="make training triples from candidate lists",
        description="Labelled triples (a judged passage over a lower-graded or unjudged "
        "candidate) for the teacher, or all candidate pairs for distillation.",
    )
    data_arg(p)
    p.add_argument("--run", required=True, help="run name, or a preference list like 'bm25,qrels' ('qrels' = the judged pool)")
    p.add_argument("--out", required=True, type=Path, help="triples file (qid, pos pid, neg pid)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--labelled", action="store_true", help="label-based pairs (default)")
    mode.add_argument("--all-pairs", action="store_true", help="every pair of the top-depth candidates")
    p.add_argument("--depth", type=int, default=None, help="--all-pairs: candidates per query (default: all)")
    p.add_argument("--max-per-query", type=int, default=None, help="sample at most N triples per query")
    p.add_argument("--seed", type=int, default=42, help="sampling seed")
    p.set_defaults(func=cmd_triples)

    p = sub.add_parser(
        "bm25",
        help="BM25 candidates (bm25s) for queries without a run, as a new data folder",
        description="Retrieves each query's top passages from the passages of --pool folders and "
        "writes OUT/queries.tsv, passages.tsv.gz, bm25.run and manifest.json. Queries "
        "that also appear (same id or same words) in a --pool or --exclude folder are "
        "dropped, so test and validation queries never become training queries.",
    )
    p.add_argument("--queries", required=True, type=Path, help="folder whose queries.tsv to retrieve for")
    p.add_argument("--pool", required=True, action="append", type=Path, help="folder whose passages to search")
    p.add_argument(
        "--exclude",
        action="append",
        type=Path,
        default=None,
        help="folder whose queries must not be used (e.g. the test sets); repeatable",
    )
    p.add_argument("--out", required=True, type=Path, help="data folder to write")
    p.add_argument("--depth", type=int, default=20, help="candidates per query")
    p.add_argument("--k1", type=float, default=0.82, help="BM25 k1 (Anserini MS MARCO passage)")
    p.add_argument("--b", type=float, default=0.68, help="BM25 b (Anserini MS MARCO passage)")
    p.add_argument("--stemmer", default="english", help="Snowball stemmer language, or 'none'")
    p.add_argument("--max-queries", type=int, default=None, help="only the first N kept queries (by id)")
    p.set_defaults(func=cmd_bm25)
