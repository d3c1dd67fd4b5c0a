"""The score cache: p50 of a repeated 100-candidate request with the cache and without it, in one
interleaved run, and the memory the cache holds per cached pair.

    .venv/bin/python -m benchmarks.cache --json benchmarks/results/cache-cpu.json

Two in-process engines serve the same model (the shipped default from its store of DL19, as
``reranker serve`` builds them, or --artifact / --store); each round sends every query's request to both, in
turns. The cached engine answers the repeats from its cache; the other scores every time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._common import DL19, Stopwatch, percentile, write_json
from reranker.data import DataFolder
from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=None, help="default: the shipped default's (built once, cached)")
    ap.add_argument("--store", type=Path, default=None, help="its passage store (default: the default's of DL19)")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.artifact is None or args.store is None:
        from reranker.provision import ensure_default

        artifact, store = ensure_default(DL19)  # under $RERANKER_HOME, as reranker serve makes it
    else:
        artifact, store = args.artifact, args.store
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    requests = [(folder.queries[q], [p for p, _ in run[q][:100]]) for q in sorted(run)[: args.queries]]
    cpu = RuntimeConfig(provider="cpu")
    engines = {
        mb: LocalEngine(EngineConfig(models=(ModelSpec("default", str(artifact), str(store)),), runtime=cpu, cache_mb=mb))
        for mb in (64.0, 0.0)
    }
    times: dict[float, list[float]] = {mb: [] for mb in engines}
    try:
        for r in range(args.rounds + 1):
            for query, ids in requests:
                for mb in sorted(engines, reverse=bool(r % 2)):
                    with Stopwatch() as t:
                        engines[mb].rerank(query, ids)
                    if r:  # round 0 scores (and fills the cache)
                        times[mb].append(t.ms)
        cache = engines[64.0].engine.cache
        record = {
            "requests": len(requests) * args.rounds,
            "candidates": 100,
            "p50_ms": {"cache": percentile(times[64.0], 0.5), "no cache": percentile(times[0.0], 0.5)},
            "p95_ms": {"cache": percentile(times[64.0], 0.95), "no cache": percentile(times[0.0], 0.95)},
            "cached_pairs": len(cache),
            "cache_bytes": cache.nbytes,
            "bytes_per_pair": round(cache.nbytes / max(1, len(cache)), 1),
        }
    finally:
        for e in engines.values():
            e.close()
    print(
        f"p50 {record['p50_ms']['cache']:.2f} ms with the cache, {record['p50_ms']['no cache']:.2f} ms without "
        f"({record['requests']} requests of 100 candidates each); {record['cached_pairs']} pairs cached in "
        f"{record['cache_bytes']} bytes ({record['bytes_per_pair']} per pair)"
    )
    write_json(args.json, record)


if __name__ == "__main__":
    main()
