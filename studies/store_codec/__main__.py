"""What a store codec costs: nDCG@10 through the served store, and the 100-candidate p50, against fp16.

    .venv/bin/python -m studies.store_codec --artifact runs/c17/onnx-colbert \
        --eval dl19=data/msmarco-passage/trec-dl-2019:runs/c17/store-colbert-dl19-fp16 \
        --eval dl21=data/msmarco-passage/trec-dl-2021:runs/c17/store-colbert-dl21-fp16 \
        --codec residual:1 --codec residual:2 --latency-requests 60 --json studies/store_codec/results/DATE-colbert-cpu.json

Each ``--eval`` names a data folder and a store of its BM25 top-100 passages in the codec the
others are compared with (built by ``reranker index --run bm25 --depth 100``). Each ``--codec``
(``residual:NBITS[:CENTROIDS]``) is made from that store with ``reranker recode`` (fitted on its
own sample of the states; nothing is encoded from text), then every query is re-ranked through
the engine's request path (``LocalEngine``: pre stage with store lookups, batcher, core stage)
by id only. Latency: the first ``--eval`` set's queries, 100 candidates, each request sent to
every store in turn (interleaved, so that a loaded machine weighs on all alike).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks._common import cpu_model, local_engine, percentile, write_json
from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.eval.irm import evaluate_with_ir_measures
from reranker.store.build import recode_store
from reranker.store.compress import CodecConfig


def parse_codec(text: str) -> CodecConfig:
    """'residual:1', 'residual:2:4096', 'residual:1:4096:131072' (k-means points), or 'pq:16[:1024[:POINTS]]'
    (sub-vectors, centroids, k-means points) -> its config."""
    name, *rest = text.split(":")
    first = {"subspaces": int(rest[0])} if name == "pq" and rest else {"nbits": int(rest[0])} if rest else {}
    return CodecConfig(
        name,
        **first,
        centroids=int(rest[1]) if len(rest) > 1 else 1024,
        kmeans_points=int(rest[2]) if len(rest) > 2 else 32768,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, type=Path)
    ap.add_argument("--eval", action="append", required=True, metavar="NAME=DATA:STORE")
    ap.add_argument("--codec", action="append", default=[], metavar="residual:NBITS|pq:SUBSPACES[:CENTROIDS[:KMEANS_POINTS]]")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--latency-requests", type=int, default=40, help="requests per store in the latency comparison")
    ap.add_argument("--skip-eval", action="store_true", help="only the latency comparison (stores already made)")
    ap.add_argument("--work", type=Path, default=None, help="where recoded stores go (default: beside each store)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    artifact = Artifact.open(args.artifact)
    report: dict = {"artifact": str(args.artifact), "cpu": cpu_model(), "sets": {}}
    first: tuple[DataFolder, dict[str, Path]] | None = None
    for spec in args.eval:
        name, rest = spec.split("=", 1)
        data, base = (Path(p) for p in rest.split(":", 1))
        folder = DataFolder.open(data)
        cands = {q: [p for p, _ in c[: args.depth]] for q, c in folder.run("bm25").items() if q in folder.qrels}
        stores = {"base": base}
        for text in args.codec:
            cfg = parse_codec(text)
            out = (args.work or base.parent) / f"{base.name}-{text.replace(':', '-')}"
            if not (out / "manifest.json").is_file():
                t0 = time.perf_counter()
                recode_store(artifact, base, out, codec=cfg)
                print(f"{name}: recoded {base} as {text} in {time.perf_counter() - t0:.0f} s")
            stores[text] = out
        results, raw = {}, {}
        for label, store in ({} if args.skip_eval else stores).items():
            manifest = json.loads((store / "manifest.json").read_text())
            run = {}
            with local_engine(args.artifact, store) as engine:
                for qid, ids in cands.items():
                    scores, _ = engine.scores(folder.queries[qid], ids, [""] * len(ids))
                    run[qid] = sorted(zip(ids, scores, strict=True), key=lambda x: -x[1])
                    raw.setdefault(label, {})[qid] = np.array(scores)
            metrics = evaluate_with_ir_measures(folder.qrels, run, 2)
            results[label] = {
                **metrics,
                "codec": manifest.get("codec", {"name": manifest["dtype"]}),
                "bytes_per_token": manifest["bytes_per_token"],
                "bytes_per_passage": manifest["bytes_per_passage"],
                "passages": manifest["passages"],
            }
        first = first or (folder, stores)
        if args.skip_eval:
            continue
        for label, m in results.items():
            m["ndcg@10_change"] = round(m["ndcg@10"] - results["base"]["ndcg@10"], 4)
            m["score_pearson_per_query"] = round(
                float(np.mean([np.corrcoef(raw["base"][q], raw[label][q])[0, 1] for q in cands])), 5
            )
        report["sets"][name] = results
        print(f"\n{name} (BM25 top-{args.depth}, {len(cands)} queries)")
        print("| store | bytes/token | nDCG@10 | change | MRR@10 | score r |\n|---|---|---|---|---|---|")
        for label, m in results.items():
            print(
                f"| {label} | {m['bytes_per_token']} | {m['ndcg@10']:.4f} | {m['ndcg@10_change']:+.4f} "
                f"| {m['mrr@10']:.4f} | {m['score_pearson_per_query']:.4f} |"
            )
    if args.latency_requests and first:
        folder, stores = first
        cands = {q: [p for p, _ in c[: args.depth]] for q, c in folder.run("bm25").items() if q in folder.qrels}
        queries = [(folder.queries[q], ids) for q, ids in cands.items() if len(ids) == args.depth]
        times: dict[str, list[float]] = {label: [] for label in stores}
        with contextlib.ExitStack() as stack:
            engines = {label: stack.enter_context(local_engine(args.artifact, s)) for label, s in stores.items()}
            for i in range(args.latency_requests + 2):
                query, ids = queries[i % len(queries)]
                for label, engine in engines.items():
                    t0 = time.perf_counter()
                    engine.scores(query, ids, [""] * len(ids))
                    if i >= 2:  # the first rounds warm the page cache and the sessions
                        times[label].append((time.perf_counter() - t0) * 1000)
        base_p50 = percentile(times["base"], 0.5)
        report["latency"] = {
            label: {
                "p50_ms": round(percentile(t, 0.5), 2),
                "p90_ms": round(percentile(t, 0.9), 2),
                "p50_ratio": round(percentile(t, 0.5) / base_p50, 3),
                "requests": len(t),
            }
            for label, t in times.items()
        }
        print(f"\nlatency, {args.depth} candidates, in process, interleaved")
        print("| store | p50 ms | p90 ms | p50 vs base |\n|---|---|---|---|")
        for label, m in report["latency"].items():
            print(f"| {label} | {m['p50_ms']} | {m['p90_ms']} | {m['p50_ratio']:.3f}x |")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
