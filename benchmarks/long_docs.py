"""Long documents whole: nDCG@10 of re-ranking a long-document variant of TREC DL 2019 with today's
truncation, with chunk-and-max and chunk-first-max, against the original short passages; the cost
per document of each.

    .venv/bin/python -m benchmarks.long_docs --json benchmarks/results/long-docs-cpu.json

The variant: every candidate of the BM25 top ``--depth`` of each judged query becomes a document whose
passage comes after ``--min-prefix``..``--max-prefix`` word pieces (uniform, seeded) of other passages'
text (passages that are not candidates of that query). Every candidate is lengthened, judged or not,
so that length says nothing of relevance. The documents are sent as text under new ids (no store
lookup), one request per query, to the shipped default through the engine's request path (the
windows, their batches and the aggregate are what serving does). Truncation is ``aggregate=first``:
the model then reads only the first window, mostly the other passages' text.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks._common import CPU, DL19, write_json
from reranker.data import DataFolder
from reranker.engine import EngineConfig, Limits, LocalEngine, ModelSpec
from reranker.eval.metrics import evaluate_run
from reranker.tokenization import Tokenizer

CONDITIONS = (("original", "short", "max"), ("truncation", "long", "first"), ("chunk-max", "long", "max"))
FIRST_MAX = ("chunk-first-max", "long", "first-max")


def long_variant(
    folder: DataFolder,
    candidates: Mapping[str, Sequence[str]],
    tokenizer: Tokenizer,
    *,
    min_prefix: int,
    max_prefix: int,
    seed: int,
) -> tuple[dict[str, dict[str, str]], dict[str, float]]:
    """Per query, candidate id -> its passage after ``min_prefix``..``max_prefix`` word pieces of other
    passages' text; and statistics of the documents' lengths in word pieces."""
    rng = np.random.default_rng(seed)
    pool = sorted(folder.passages)
    pieces = {pid: len(p) for pid, p in zip(pool, tokenizer.word_pieces([folder.passages[p] for p in pool]), strict=True)}
    docs: dict[str, dict[str, str]] = {}
    lengths: list[int] = []
    for qid, pids in candidates.items():
        own = set(pids)
        docs[qid] = {}
        for pid in pids:
            target = int(rng.integers(min_prefix, max_prefix + 1))
            parts, filled = [], 0
            while filled < target:
                other = pool[int(rng.integers(len(pool)))]
                if other not in own:
                    parts.append(folder.passages[other])
                    filled += pieces[other]
            docs[qid][pid] = " ".join([*parts, folder.passages[pid]])
            lengths.append(filled + pieces[pid])
    arr = np.asarray(lengths)
    return docs, {"mean": float(arr.mean()), "p50": float(np.median(arr)), "min": int(arr.min()), "max": int(arr.max())}


def rerank_all(
    engine: LocalEngine, folder: DataFolder, texts: Mapping[str, Mapping[str, str]], aggregate: str, label: str
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, float]]:
    """One request per query; the run and the cost (seconds, windows, documents)."""
    run: dict[str, list[tuple[str, float]]] = {}
    seconds, windows, docs = 0.0, 0, 0
    for qid, by_pid in tqdm(texts.items(), desc=label, unit="query"):
        ids = list(by_pid)
        started = time.perf_counter()
        out = engine.rerank(folder.queries[qid], [f"x{pid}" for pid in ids], [by_pid[p] for p in ids], aggregate=aggregate)
        seconds += time.perf_counter() - started
        windows += out.stats["windows"]
        docs += len(ids)
        run[qid] = [(ids[r.index], r.score) for r in out.results]
    cost = {
        "seconds": round(seconds, 2),
        "ms_per_document": round(1000 * seconds / docs, 3),
        "windows_per_document": round(windows / docs, 3),
        "ms_per_window": round(1000 * seconds / windows, 3),
    }
    return run, cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=None, help="default: the shipped default's (assembled once, cached)")
    ap.add_argument("--data", type=Path, default=DL19)
    ap.add_argument("--depth", type=int, default=100, help="BM25 candidates re-ranked per query")
    ap.add_argument("--queries", type=int, default=0, help="judged queries used (0 = all)")
    ap.add_argument("--min-prefix", type=int, default=300, help="word pieces of other text before the passage, at least")
    ap.add_argument("--max-prefix", type=int, default=600, help="... and at most")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--first-max", action="store_true", help="also measure the first-max aggregate")
    ap.add_argument("--window-tokens", type=int, default=None, help="default: the model's passage length")
    ap.add_argument("--window-stride", type=int, default=None, help="default: half a window")
    ap.add_argument(
        "--conditions",
        default="original,truncation,chunk-max",
        help="comma-separated, of: " + ", ".join(c[0] for c in (*CONDITIONS, FIRST_MAX)),
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.artifact is None:
        from reranker.provision import ensure_default_artifact

        artifact = ensure_default_artifact().directory
    else:
        artifact = args.artifact
    folder = DataFolder.open(args.data)
    qrels, bm25 = folder.qrels, folder.run("bm25")
    qids = [q for q in sorted(bm25) if q in qrels]
    qids = qids[: args.queries] if args.queries else qids
    candidates = {q: [pid for pid, _ in bm25[q][: args.depth]] for q in qids}
    limits = Limits(window_tokens=args.window_tokens, window_stride=args.window_stride)
    engine = LocalEngine(EngineConfig(models=(ModelSpec("default", str(artifact), limits=limits),), runtime=CPU, cache_mb=0))
    try:
        model = engine.engine.models["default"]
        plan = model.prepare.window_plan
        long_docs, lengths = long_variant(
            folder,
            candidates,
            model.prepare.prep.tokenizer,
            min_prefix=args.min_prefix,
            max_prefix=args.max_prefix,
            seed=args.seed,
        )
        short = {q: {pid: folder.passages[pid] for pid in pids} for q, pids in candidates.items()}
        record: dict[str, object] = {
            "data": f"{args.data.name} BM25 top {args.depth}, {len(qids)} judged queries",
            "model": str(model.description.arch) + " (the shipped default)" if args.artifact is None else str(artifact),
            "windowing": {
                "window_tokens": plan.size,
                "window_stride": plan.stride,
                "max_windows_per_candidate": plan.per_candidate,
                "max_windows_per_request": plan.per_request,
            },
            "prefix_word_pieces": [args.min_prefix, args.max_prefix],
            "document_word_pieces": lengths,
            "bm25": round(evaluate_run(qrels, {q: bm25[q][: args.depth] for q in qids})["ndcg@10"], 4),
        }
        results: dict[str, dict[str, float]] = {}
        wanted = args.conditions.split(",") + (["chunk-first-max"] if args.first_max else [])
        for name, variant, aggregate in (c for c in (*CONDITIONS, FIRST_MAX) if c[0] in wanted):
            run, cost = rerank_all(engine, folder, short if variant == "short" else long_docs, aggregate, name)
            results[name] = {"ndcg@10": round(evaluate_run(qrels, run)["ndcg@10"], 4), **cost}
        record["results"] = results
        if "original" in results and "chunk-max" in results:
            gap = results["original"]["ndcg@10"] - results["chunk-max"]["ndcg@10"]
            record["goal"] = {"chunk_max_within_0.02_of_original": bool(gap <= 0.02), "gap": round(gap, 4)}
    finally:
        engine.close()
    print(f"documents of {lengths['mean']:.0f} word pieces on average ({lengths['min']}-{lengths['max']}); BM25 {record['bm25']}")
    print(f"{'condition':<18} {'nDCG@10':>8} {'windows/doc':>12} {'ms/doc':>8}")
    for name, r in results.items():
        print(f"{name:<18} {r['ndcg@10']:>8.4f} {r['windows_per_document']:>12.2f} {r['ms_per_document']:>8.2f}")
    write_json(args.json, record)


if __name__ == "__main__":
    main()
