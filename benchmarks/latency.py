"""Closed-loop latency and throughput of a running reranker server, over gRPC.

For every served model (or --models), requests are real DL19 queries with their BM25 top-N
candidates: by id for models with a passage store, by text otherwise. For each N and concurrency
level, C client threads send requests back to back after a warm-up; the server's /metrics give
the mean batch size and the queue vs inference time of the same window.

    .venv/bin/reranker serve --config server.toml &          # or: --config given here starts one
    .venv/bin/python -m benchmarks.latency --server localhost:50051 --metrics localhost:9090 \\
        --json benchmarks/results/latency.json
    .venv/bin/python -m benchmarks.latency --config server.toml --quick     # < 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import DL19, ROOT, cpu_model, local_engine, percentile, start_server
from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.engine import RuntimeConfig


def machine(models: list[Any]) -> dict[str, Any]:
    import onnxruntime

    cpu = cpu_model()
    gpu = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip() or None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "providers": sorted({m.provider for m in models})}


def scrape(metrics: str | None) -> dict[tuple[str, str], float]:
    """(metric name, model label) -> value for the sums and counts this report uses."""
    if not metrics:
        return {}
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], float] = {}
    pattern = re.compile(r'^(reranker_(?:batch_size|queue_duration_seconds|inference_duration_seconds)_(?:sum|count))'
                         r'\{model="([^"]+)"\} (\S+)$')
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def delta(after: dict, before: dict, name: str, model: str) -> float:
    return after.get((name, model), 0.0) - before.get((name, model), 0.0)


def run_cell(target: str, token: str | None, model: str, requests: list[tuple[str, list]], concurrency: int,
             count: int, duration: float, warmup: int) -> dict[str, float]:
    clients = [RerankerClient(target, token=token, timeout=120) for _ in range(concurrency)]
    for i in range(warmup):
        q, cands = requests[i % len(requests)]
        clients[0].rerank(q, cands, model=model)
    latencies: list[float] = []
    lock = threading.Lock()
    issued = [0]
    stop_at = time.monotonic() + duration if duration else None

    def worker(k: int) -> None:
        while True:
            with lock:
                if (count and issued[0] >= count) or (stop_at and time.monotonic() >= stop_at):
                    return
                i = issued[0]
                issued[0] += 1
            q, cands = requests[i % len(requests)]
            start = time.perf_counter()
            clients[k].rerank(q, cands, model=model)
            with lock:
                latencies.append((time.perf_counter() - start) * 1000.0)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    n = len(latencies)
    return {"requests": n, "seconds": round(elapsed, 3), "p50_ms": round(percentile(latencies, 0.5), 2),
            "p95_ms": round(percentile(latencies, 0.95), 2), "p99_ms": round(percentile(latencies, 0.99), 2),
            "qps": round(n / elapsed, 2)}


def peer_cross_encoder(checkpoint: Path, requests: list[tuple[str, list]], count: int, batch_size: int,
                       work: Path) -> dict[str, float]:
    """sentence-transformers' CrossEncoder on the same BERT-cat weights, in process, one query at a time."""
    import torch
    from sentence_transformers import CrossEncoder

    from reranker.models.hf_export import to_hf_cross_encoder

    hf_dir = to_hf_cross_encoder(checkpoint, work / "hf-cross-encoder")
    model = CrossEncoder(str(hf_dir), max_length=232, device="cpu")
    identity = torch.nn.Identity()

    def one(i: int) -> None:
        query, cands = requests[i % len(requests)]
        model.predict([(query, text) for _, text in cands], batch_size=batch_size, activation_fn=identity,
                      show_progress_bar=False)

    one(0)
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        one(i + 1)
        latencies.append((time.perf_counter() - t) * 1000.0)
    elapsed = time.perf_counter() - started
    return {"requests": count, "p50_ms": round(percentile(latencies, 0.5), 2), "p95_ms": round(percentile(latencies, 0.95), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "qps": round(count / elapsed, 2)}


def in_process(artifact: Path, store: Path | None, requests: list[tuple[str, list]], count: int) -> dict[str, float]:
    """The same model in process: the engine's request path (pre stage, batcher, core), no gRPC."""
    latencies = []
    with local_engine(artifact, store, runtime=RuntimeConfig()) as engine:
        for i in range(count + 1):
            query, cands = requests[i % len(requests)]
            ids = [c if isinstance(c, str) else c[0] for c in cands]
            texts = ["" if isinstance(c, str) else c[1] for c in cands]
            t = time.perf_counter()
            engine.rerank(query, ids, texts)
            if i:
                latencies.append((time.perf_counter() - t) * 1000.0)
    return {"requests": count, "p50_ms": round(percentile(latencies, 0.5), 2), "p95_ms": round(percentile(latencies, 0.95), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=None, help="HOST:PORT of a running server")
    ap.add_argument("--metrics", default=None, help="HOST:PORT of its /metrics (for batch size and queue time)")
    ap.add_argument("--config", type=Path, default=None, help="start a server from this config instead")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all served)")
    ap.add_argument("--candidates", default="10,100", help="candidates per request (DL19 BM25 has the top-100)")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=60, help="requests per cell (0 = use --duration)")
    ap.add_argument("--duration", type=float, default=0.0, help="seconds per cell instead of a request count")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small cells: finishes in under two minutes on 2 cores")
    ap.add_argument("--token", default=os.environ.get("RERANKER_TOKEN"))
    ap.add_argument("--peer-cross-encoder", type=Path, default=None,
                    help="BERT-cat checkpoint: also time sentence-transformers' CrossEncoder on its weights")
    ap.add_argument("--peer-batch-size", type=int, default=32, help="CrossEncoder.predict batch size (its default)")
    ap.add_argument("--in-process", default=None,
                    help="MODEL=ARTIFACT[:STORE]: also time that served model scored in process (gRPC overhead)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-latency")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.candidates, args.concurrency, args.requests, args.warmup = "10,100", "1,4", 12, 2
    proc = None
    if args.config:
        proc, args.server, args.metrics = start_server(args.config)
    if not args.server:
        raise SystemExit("give --server HOST:PORT (and --metrics HOST:PORT) or --config FILE")
    try:
        folder = DataFolder.open(DL19)
        run = folder.run("bm25")
        qids = sorted(run)
        with RerankerClient(args.server, token=args.token) as client:
            models = list(client.list_models())
        wanted = set(filter(None, args.models.split(",")))
        records = []
        for m in models:
            if wanted and m.name not in wanted:
                continue
            for n in (int(x) for x in args.candidates.split(",")):
                if n > m.max_candidates:
                    continue
                by_id = m.store_passages > 0
                requests = [(folder.queries[q], [p if by_id else (p, folder.passages[p]) for p, _ in run[q][:n]])
                            for q in qids]
                for c in (int(x) for x in args.concurrency.split(",")):
                    before = scrape(args.metrics)
                    cell = run_cell(args.server, args.token, m.name, requests, c, args.requests, args.duration,
                                    args.warmup if c == 1 else 0)
                    after = scrape(args.metrics)
                    batches = delta(after, before, "reranker_batch_size_count", m.name)
                    record = {"model": m.name, "arch": m.arch, "precision": m.precision, "provider": m.provider,
                              "input": "ids" if by_id else "text", "candidates": n, "concurrency": c, **cell,
                              "pairs_per_s": round(cell["qps"] * n, 1)}
                    if batches:
                        requests_seen = delta(after, before, "reranker_queue_duration_seconds_count", m.name) or 1
                        record["mean_batch_size"] = round(delta(after, before, "reranker_batch_size_sum", m.name) / batches, 1)
                        record["mean_queue_ms"] = round(
                            1000 * delta(after, before, "reranker_queue_duration_seconds_sum", m.name) / requests_seen, 2)
                        record["mean_inference_ms_per_batch"] = round(
                            1000 * delta(after, before, "reranker_inference_duration_seconds_sum", m.name) / batches, 2)
                    records.append(record)
                    print(f"{m.name:14s} {record['input']:4s} N={n:<4d} C={c:<3d} p50 {cell['p50_ms']:8.1f} ms  "
                          f"p95 {cell['p95_ms']:8.1f}  p99 {cell['p99_ms']:8.1f}  {cell['qps']:7.2f} q/s  "
                          f"{record['pairs_per_s']:8.1f} pairs/s  batch {record.get('mean_batch_size', '-')}", flush=True)
        peers: dict[str, Any] = {}
        requests100 = [(folder.queries[q], [(p, folder.passages[p]) for p, _ in run[q][:100]]) for q in qids]
        if args.peer_cross_encoder:
            cell = peer_cross_encoder(args.peer_cross_encoder, requests100, max(args.requests // 2, 5),
                                      args.peer_batch_size, args.work)
            peers["sentence-transformers CrossEncoder (teacher weights, PyTorch)"] = {
                **cell, "candidates": 100, "concurrency": 1, "pairs_per_s": round(cell["qps"] * 100, 1)}
        if args.in_process:
            name, _, paths = args.in_process.partition("=")
            artifact, _, store = paths.partition(":")
            reqs = requests100 if not store else [(q, [p for p, _ in c]) for q, c in requests100]
            peers[f"{name} in process (no gRPC)"] = {**in_process(Path(artifact), Path(store) if store else None, reqs,
                                                                  max(args.requests // 2, 5)), "candidates": 100}
        for name, cell in peers.items():
            print(f"{name}: p50 {cell['p50_ms']} ms" + (f", {cell['pairs_per_s']} pairs/s" if "pairs_per_s" in cell else ""))
        print("\n| model | arch | input | N | C | p50 ms | p95 ms | p99 ms | q/s | pairs/s | mean batch | queue ms | "
              "inference ms/batch |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in records:
            print(f"| {r['model']} | {r['arch']} | {r['input']} | {r['candidates']} | {r['concurrency']} | {r['p50_ms']} | "
                  f"{r['p95_ms']} | {r['p99_ms']} | {r['qps']} | {r['pairs_per_s']} | {r.get('mean_batch_size', '-')} | "
                  f"{r.get('mean_queue_ms', '-')} | {r.get('mean_inference_ms_per_batch', '-')} |")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"machine": machine(models), "records": records, "peers": peers},
                                            indent=2) + "\n")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
