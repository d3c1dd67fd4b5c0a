"""A bounded soak test on loopback: mixed traffic well above capacity, then a report.

    .venv/bin/python -m benchmarks.soak --config benchmarks/configs/soak-cpu.toml --seconds 180 \\
        --concurrency 32 --json benchmarks/results/soak-cpu.json

Starts its own server from the config (loopback only), runs C closed-loop clients for a fixed time
with a mix of requests (ids from the store, texts, 10 to 100 candidates, some with short deadlines,
some invalid; a shed client backs off for --shed-backoff seconds), and reports: requests and errors
by status code, p50/p99 latency overall and per time window, the server's resident memory at the
start and the end, how fast RESOURCE_EXHAUSTED answers come, and whether every admitted request got
its answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from benchmarks._common import DL19, percentile, start_server, write_json
from reranker.client import RerankerClient
from reranker.data import DataFolder


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def server_shed_quantiles(metrics_target: str) -> dict[str, float | None]:
    """Upper bounds (histogram bucket edges, ms) of the server-side p50 / p99 time of shed requests
    (``reranker_shed_duration_seconds``): the server's share of the shed latency the clients see."""
    with urllib.request.urlopen(f"http://{metrics_target}/metrics", timeout=10) as r:
        text = r.read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("reranker_shed_duration_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            edge = float("inf") if le == "+Inf" else float(le)
            buckets[edge] = buckets.get(edge, 0.0) + float(line.rsplit(" ", 1)[1])
    total = buckets.get(float("inf"), 0.0)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        edge = next((e for e in sorted(buckets) if total and buckets[e] >= q * total), None)
        out[name] = round(edge * 1000.0, 1) if edge is not None and edge != float("inf") else None
    return out


def start_probe(target: str, seconds: float, interval: float) -> subprocess.Popen:
    """A client in its own process at a higher priority (benchmarks/soak_probe.py)."""
    command = [sys.executable, "-m", "benchmarks.soak_probe", "--target", target, "--seconds", str(seconds)]
    return subprocess.Popen([*command, "--interval", str(interval)], stdout=subprocess.PIPE, text=True)


def finish_probe(probe: subprocess.Popen) -> dict:
    out = probe.communicate(timeout=120)[0]
    return json.loads(out) if probe.returncode == 0 else {"failed": probe.returncode}


def probe_summary(probed: dict, interval: float) -> dict:
    """The probe client's answers (benchmarks/soak_probe.py) as codes and client-side quantiles."""
    if "failed" in probed:
        return probed
    rows = probed["records"]
    out: dict = {"interval_s": interval, "priority": probed["priority"], "codes": dict(Counter(r[2] for r in rows))}
    for name, code in (("ok", "OK"), ("shed", "RESOURCE_EXHAUSTED")):
        ms = [r[1] for r in rows if r[2] == code]
        for q, p in (("p50", 0.5), ("p99", 0.99)):
            out[f"{name}_{q}_ms"] = round(percentile(ms, p), 2) if ms else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--seconds", type=float, default=180.0, help="traffic duration (bounded)")
    ap.add_argument(
        "--warmup-seconds",
        type=float,
        default=30.0,
        help="mixed traffic before the memory baseline (allocator arenas grow to their working size)",
    )
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests sent")
    ap.add_argument("--window", type=float, default=15.0, help="seconds per latency window")
    ap.add_argument(
        "--shed-backoff",
        type=float,
        default=0.1,
        help="seconds (jittered +-50%%) a client waits after RESOURCE_EXHAUSTED before its next request, "
        "as a client honouring the shed would; 0 = retry at once (a retry storm)",
    )
    ap.add_argument(
        "--probe-interval",
        type=float,
        default=0.0,
        help="seconds between the requests of a probe client in its own process at a higher priority "
        "(benchmarks/soak_probe.py: sheds and answers as a client that is not starved sees them); 0 = none",
    )
    ap.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="nice increment of the load's clients (this process, after starting the server): on one "
        "machine, clients that do not take the server's CPU, as remote ones would not",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    proc, target, metrics_target = start_server(args.config)
    if args.client_nice:  # the load's clients below the server (started before, unaffected): as if remote
        os.nice(args.client_nice)
    try:
        folder = DataFolder.open(DL19)
        run = folder.run("bm25")
        qids = sorted(run)
        with RerankerClient(target) as client:
            models = {m.name: m for m in client.list_models()}
            for _ in range(3):  # warm-up before the memory baseline
                client.rerank(folder.queries[qids[0]], [p for p, _ in run[qids[0]][:10]])
        lock = threading.Lock()
        records: list[tuple[float, float, str, str, str]] = []  # (t, ms, code, kind, shape)
        sent = [0]
        started = stop_at = 0.0

        def worker(k: int) -> None:
            rng = random.Random(args.seed * 1000 + k)
            with RerankerClient(target, timeout=60) as client:
                while time.monotonic() < stop_at:
                    with lock:
                        if sent[0] >= args.max_requests:
                            return
                        sent[0] += 1
                    q = rng.choice(qids)
                    n = rng.choice([10, 30, 100])
                    name = rng.choice(list(models))
                    by_id = models[name].store_passages > 0 and rng.random() < 0.8
                    cands = [p if by_id else (p, folder.passages[p]) for p, _ in run[q][:n]]
                    kind, query, timeout = "normal", folder.queries[q], 60.0
                    roll = rng.random()
                    if roll < 0.05:
                        kind, query = "invalid", ""
                    elif roll < 0.15:
                        kind, timeout = "short-deadline", 0.05
                    t0 = time.monotonic()
                    try:
                        client.rerank(query, cands, model=name, timeout=timeout)
                        code = "OK"
                    except grpc.RpcError as exc:
                        code = exc.code().name
                    with lock:
                        records.append(
                            (t0 - started, (time.monotonic() - t0) * 1000.0, code, kind, f"{'ids' if by_id else 'texts'}-{n}")
                        )
                    if code == "RESOURCE_EXHAUSTED" and args.shed_backoff:
                        time.sleep(args.shed_backoff * rng.uniform(0.5, 1.5))

        def traffic(seconds: float) -> None:
            nonlocal started, stop_at
            started = time.monotonic()
            stop_at = started + seconds
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(worker, range(args.concurrency)))

        traffic(args.warmup_seconds)
        records.clear()
        time.sleep(1.0)
        rss_start = rss_mb(proc.pid)
        samples: list[tuple[float, float]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(5.0):
                samples.append((time.monotonic() - started, rss_mb(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        probe = start_probe(target, args.seconds, args.probe_interval) if args.probe_interval else None
        traffic(args.seconds)
        sampling.set()
        probed = finish_probe(probe) if probe is not None else None
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        rss_end = rss_mb(proc.pid)
        with RerankerClient(target) as client:
            healthy = client.health()
        shed_server = server_shed_quantiles(metrics_target)
        codes = Counter(r[2] for r in records)
        by_kind = {kind: dict(Counter(r[2] for r in records if r[3] == kind)) for kind in ("normal", "short-deadline", "invalid")}
        unexpected = [r for r in records if r[3] == "normal" and r[2] not in ("OK", "RESOURCE_EXHAUSTED")]
        shed_ms = [r[1] for r in records if r[2] == "RESOURCE_EXHAUSTED"]
        ok_ms = [r[1] for r in records if r[2] == "OK"]
        by_shape: dict[str, dict[str, float]] = {}
        for shape in sorted({r[4] for r in records}):
            lat = [r[1] for r in records if r[4] == shape and r[2] == "OK"]
            if lat:
                by_shape[shape] = {
                    "ok": len(lat),
                    "p50_ms": round(percentile(lat, 0.5), 1),
                    "p99_ms": round(percentile(lat, 0.99), 1),
                }
        windows = []
        w = 0.0
        while w < elapsed:
            lat = [r[1] for r in records if w <= r[0] < w + args.window and r[2] == "OK"]
            rss = [mb for t, mb in samples if w <= t < w + args.window]
            if lat:
                windows.append(
                    {
                        "from_s": round(w, 1),
                        "ok": len(lat),
                        "p50_ms": round(percentile(lat, 0.5), 1),
                        "p99_ms": round(percentile(lat, 0.99), 1),
                        "rss_mb": round(max(rss), 1) if rss else None,
                    }
                )
            w += args.window
        report = {
            "seconds": round(elapsed, 1),
            "warmup_seconds": args.warmup_seconds,
            "concurrency": args.concurrency,
            "shed_backoff_s": args.shed_backoff,
            "client_nice": args.client_nice,
            "requests": len(records),
            "codes": dict(codes),
            "codes_by_kind": by_kind,
            "admitted_normal_requests_without_answer": len(unexpected),
            "ok_p50_ms": round(percentile(ok_ms, 0.5), 1) if ok_ms else None,
            "ok_p99_ms": round(percentile(ok_ms, 0.99), 1) if ok_ms else None,
            "ok_by_shape": by_shape,
            "shed_p50_ms": round(percentile(shed_ms, 0.5), 2) if shed_ms else None,
            "shed_p99_ms": round(percentile(shed_ms, 0.99), 2) if shed_ms else None,
            "shed_server_side_ms_at_most": shed_server,
            "rss_start_mb": round(rss_start, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 2),
            "health_after": healthy,
            "offered_per_s": round(len(records) / elapsed, 1),
            "answered_per_s": round(codes["OK"] / elapsed, 1),
            "overload": round(len(records) / max(codes["OK"], 1), 2),
            "windows": windows,
        }
        if probed is not None:
            report["probe"] = probe_summary(probed, args.probe_interval)
        print(json.dumps(report, indent=2))
        write_json(args.json, report)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
