"""Closed-loop latency and throughput of the reranker over gRPC, with nothing to prepare.

With no arguments it builds what it needs once (cached under --work: models of every architecture
at the real MiniLM shapes, their ONNX graphs, passage stores of the requests' passages; see
benchmarks/latency_build.py), starts its own server on free ports, measures, prints a table and
stops the server. Requests are real DL19 queries with their BM25 candidates: by id for models with
a passage store, as text otherwise (N > 100: the query's top 100, then other queries' candidates).

    .venv/bin/python benchmarks/latency.py --quick                 # < 3 minutes on 2 cores once built
    .venv/bin/python -m benchmarks.latency --json benchmarks/results/latency-cpu.json
    .venv/bin/python -m benchmarks.latency --server HOST:PORT [--metrics HOST:PORT]   # a deployed server
    .venv/bin/python -m benchmarks.latency --config server.toml                       # start that server

Refusals (RESOURCE_EXHAUSTED) are a figure, not a failure: each cell reports its shed rate and a
shed client backs off (--shed-backoff-ms) before its next request. A second phase alternates, request
by request, the teacher and every model with a store, each over gRPC and in process (the engine's
own request path, no gRPC): p50 ratios to the teacher and the gRPC overhead from one run.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # `python benchmarks/latency.py`: run as the package module
    import os
    import sys
    from pathlib import Path

    _root = Path(__file__).resolve().parents[1]
    _python = _root / ".venv/bin/python"
    _env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_root), os.environ.get("PYTHONPATH")]))}
    _exe = str(_python) if _python.is_file() else sys.executable
    os.execve(_exe, [_exe, "-m", "benchmarks.latency", *sys.argv[1:]], _env)

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from benchmarks import latency_build as lb
from benchmarks._common import DL19, ROOT, Stopwatch, percentile, start_server
from benchmarks.latency_report import delta, machine, print_table, scrape, summary
from reranker.client import RerankerClient
from reranker.data import DataFolder

QUICK = {"candidates": "100", "concurrency": "1,4", "requests": 8, "cell_seconds": 4.0, "rounds": 5, "queries": 10, "warmup": 1}


def make_requests(folder: DataFolder, qids: list[str], n: int, by_id: bool) -> list[tuple[str, list]]:
    """One request per query: its BM25 top-n, then (n > its list) other queries' candidates."""
    run = folder.run("bm25")
    pool = [p for q in qids for p, _ in run[q]]
    out, start = [], 0
    for q in qids:
        own = [p for p, _ in run[q][:n]]
        seen = set(own)
        start += len(run[q])
        for p in pool[start:] + pool[:start]:
            if len(own) >= n:
                break
            if p not in seen:
                own.append(p)
                seen.add(p)
        out.append((folder.queries[q], [p if by_id else (p, folder.passages[p]) for p in own]))
    return out


def run_cell(
    target: str,
    token: str | None,
    model: str,
    requests: list[tuple[str, list]],
    concurrency: int,
    count: int,
    seconds: float,
    warmup: int,
    backoff_s: float,
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients until ``count`` requests were issued or ``seconds`` passed."""
    clients = [RerankerClient(target, token=token, timeout=600) for _ in range(concurrency)]
    for i in range(warmup):
        q, cands = requests[i % len(requests)]
        clients[0].rerank(q, cands, model=model)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    issued = [0]
    stop_at = time.monotonic() + seconds if seconds else None

    def worker(k: int) -> None:
        while True:
            with lock:
                if (count and issued[0] >= count) or (stop_at and time.monotonic() >= stop_at and issued[0] >= concurrency):
                    return
                i = issued[0]
                issued[0] += 1
            q, cands = requests[i % len(requests)]
            start = time.perf_counter()
            try:
                clients[k].rerank(q, cands, model=model)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            with lock:
                codes[code] = codes.get(code, 0) + 1
                if code == "OK":
                    latencies.append((time.perf_counter() - start) * 1000.0)
            if code == "RESOURCE_EXHAUSTED":
                time.sleep(backoff_s)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    n, total = len(latencies), sum(codes.values())
    stat = {f"p{q}_ms": round(percentile(latencies, q / 100), 2) if n else None for q in (50, 95, 99)}
    return {
        "requests": total,
        "ok": n,
        "shed": codes.get("RESOURCE_EXHAUSTED", 0),
        "shed_rate": round(codes.get("RESOURCE_EXHAUSTED", 0) / max(total, 1), 3),
        "errors": {c: k for c, k in codes.items() if c not in ("OK", "RESOURCE_EXHAUSTED")},
        "seconds": round(elapsed, 3),
        **stat,
        "qps": round(n / elapsed, 2),
    }


class HttpLeg:
    """The same request over the HTTP API (``POST /v2/rerank``, ids as ``{"id": ...}`` documents) on one
    keep-alive connection with TCP_NODELAY, as urllib3 (requests) and the other HTTP clients set it:
    ``http.client`` writes the headers and the body in two sends, and without it Nagle's algorithm
    holds the body until the server's delayed ACK of the headers (about 40 ms on Linux)."""

    def __init__(self, target: str, token: str | None) -> None:
        host, port = target.rsplit(":", 1)
        self.address = (host, int(port))
        self.conn = self._connect()
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}

    def _connect(self) -> Any:
        import http.client
        import socket

        conn = http.client.HTTPConnection(*self.address, timeout=600)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def rerank(self, query: str, cands: list, model: str) -> None:
        import http.client

        docs = [{"id": c} if isinstance(c, str) else c[1] for c in cands]
        body = json.dumps({"model": model, "query": query, "documents": docs})
        try:
            self.conn.request("POST", "/v2/rerank", body=body, headers=self.headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed the idle keep-alive connection (5 s) while slower legs ran: reconnect once
            self.conn.close()
            self.conn = self._connect()
            self.conn.request("POST", "/v2/rerank", body=body, headers=self.headers)
            response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP leg: {response.status} {body[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def interleaved(
    target: str,
    token: str | None,
    served: list[dict],
    requests: dict[str, list],
    rounds: int,
    provider: str,
    http_target: str | None = None,
) -> dict[str, Any]:
    """Round-robin over ``served``: each round sends every model one request over gRPC, the same one in
    process and (with ``http_target``) over HTTP, rotating which goes first, so every figure saw the
    same machine load."""
    from reranker.engine import LocalEngine, RuntimeConfig

    engines = {
        m["name"]: LocalEngine.of(m["artifact"], m.get("store", ""), runtime=RuntimeConfig(provider=provider), cache_mb=0)
        for m in served
    }
    legs = ("grpc", "in_process", "http") if http_target else ("grpc", "in_process")
    times: dict[str, dict[str, list[float]]] = {m["name"]: {leg: [] for leg in legs} for m in served}
    http = HttpLeg(http_target, token) if http_target else None
    try:
        with RerankerClient(target, token=token, timeout=600) as client:
            for r in range(rounds + 1):
                for m in served:
                    q, cands = requests[m["name"]][r % len(requests[m["name"]])]
                    ids = [c if isinstance(c, str) else c[0] for c in cands]
                    texts = ["" if isinstance(c, str) else c[1] for c in cands]
                    for leg in legs[r % len(legs) :] + legs[: r % len(legs)]:
                        with Stopwatch() as t:
                            if leg == "grpc":
                                client.rerank(q, cands, model=m["name"])
                            elif leg == "http" and http is not None:
                                http.rerank(q, cands, m["name"])
                            else:
                                engines[m["name"]].rerank(q, ids, texts)
                        if r:  # round 0 warms up
                            times[m["name"]][leg].append(t.ms)
    finally:
        for e in engines.values():
            e.close()
        if http is not None:
            http.close()
    return summary(times, served)


def own_server(args: argparse.Namespace) -> tuple[list[dict], Path]:
    """Build (in a subprocess, cached per base and model options) and configure the benchmark's own models."""
    key = hashlib.sha256(f"{args.base}\n{args.lengths}".encode()).hexdigest()[:8]
    args.work = args.work / f"{Path(args.base).name}-{key}"
    _, pids = lb.passage_ids(args.data, args.queries)
    served = lb.models(
        args.archs.split(","),
        args.work,
        lb.store_key(pids),
        tuple(args.precisions.split(",")),
        student_precisions=tuple(args.student_precisions.split(",")),
        families=tuple(filter(None, args.families.split(","))),
        store_codec=args.store_codec,
        colbert_dims=lb.dims(args.colbert_dims),
    )
    if lb.missing(served):
        print(
            f"benchmarks.latency: building {len(lb.missing(served))} artifact(s)/store(s) under {args.work} (once; cached)",
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.latency_build",
                "--work",
                str(args.work),
                "--data",
                str(args.data),
                "--queries",
                str(args.queries),
                "--archs",
                args.archs,
                "--base",
                args.base,
                "--lengths",
                args.lengths,
                "--provider",
                args.provider,
                "--precisions",
                args.precisions,
                "--student-precisions",
                args.student_precisions,
                "--families",
                args.families,
                "--store-codec",
                args.store_codec,
                "--colbert-dims",
                args.colbert_dims,
            ],
            check=True,
            cwd=ROOT,
        )
    return served, lb.write_config(args.work, served, args.provider, 1000, args.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=None, help="HOST:PORT of a running server (else one is started)")
    ap.add_argument("--metrics", default=None, help="HOST:PORT of its /metrics (for batch size and queue time)")
    ap.add_argument(
        "--http-server",
        default=None,
        help="HOST:PORT of the running server's HTTP API (the interleaved phase then times HTTP too)",
    )
    ap.add_argument("--config", type=Path, default=None, help="start a server from this config")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all served)")
    ap.add_argument("--candidates", default="10,100,1000", help="candidates per request")
    ap.add_argument("--text-max-candidates", type=int, default=100, help="largest N for models without a store")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--text-max-concurrency", type=int, default=16, help="largest C for models without a store")
    ap.add_argument("--requests", type=int, default=60, help="most requests per cell")
    ap.add_argument("--cell-seconds", type=float, default=15.0, help="most seconds per cell (0 = --requests only)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15, help="rounds of the interleaved gRPC / in-process phase")
    ap.add_argument("--shed-backoff-ms", type=float, default=50.0)
    ap.add_argument("--quick", action="store_true", help="small cells: under 3 minutes on 2 cores (once built)")
    ap.add_argument("--token", default=os.environ.get("RERANKER_TOKEN"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-latency", help="cache of the built models")
    ap.add_argument("--data", type=Path, default=DL19)
    ap.add_argument("--queries", type=int, default=10, help="queries sent (their BM25 top-100 are in the stores)")
    ap.add_argument("--archs", default="bert_cat,colbert,bert_dot,tk", help="architectures built and served")
    ap.add_argument("--base", default="minilm", help="initial weights: 'minilm' (real shapes) or a BERT directory")
    ap.add_argument("--lengths", default=lb.MODEL_OPTIONS, help="JSON model options (ModelConfig fields)")
    ap.add_argument("--precisions", default="fp32,int8", help="of the teacher (fp32, fp16, int8)")
    ap.add_argument(
        "--student-precisions",
        default="fp32",
        help="of the students served from their stores (fp32, int8: each with a store of its own)",
    )
    ap.add_argument(
        "--families",
        default="",
        help="also serve imported cross-encoders of these families at base shape, random weights "
        "(xlm-roberta, deberta-v3, modernbert; see benchmarks/latency_families.py)",
    )
    ap.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--batch-size", type=int, default=16, help="the server's max_batch_size (CPU: 16)")
    ap.add_argument(
        "--store-codec", default="default", help="the stores' codec: 'default' (the architecture's, as served) or float16"
    )
    ap.add_argument(
        "--colbert-dims", default="", help="also serve ColBERT projected to these dimensions (e.g. 128: colbert-d128)"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--interleave-candidates", type=int, default=100, help="N of the interleaved phase")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # options given explicitly still win
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop our server
    served: list[dict] = []
    proc = None
    if args.server is None:
        if args.config is None:
            served, args.config = own_server(args)
        served_by = start_server(args.config)
        proc, args.server, args.metrics = served_by
        args.http_server = args.http_server or served_by.http
    started = time.perf_counter()
    try:
        folder = DataFolder.open(args.data)
        qids = sorted(folder.run("bm25"))[: args.queries]
        with RerankerClient(args.server, token=args.token) as client:
            listed = list(client.list_models())
        wanted = set(filter(None, args.models.split(",")))
        records, reqs100 = [], {}
        for m in listed:
            if wanted and m.name not in wanted:
                continue
            by_id = m.store_passages > 0
            for n in (int(x) for x in args.candidates.split(",")):
                if n > m.max_candidates or (not by_id and n > args.text_max_candidates) or n > 100 * len(qids):
                    continue
                requests = make_requests(folder, qids, n, by_id)
                if n == args.interleave_candidates:
                    reqs100[m.name] = requests
                for c in (int(x) for x in args.concurrency.split(",")):
                    if not by_id and c > args.text_max_concurrency:
                        continue
                    before = scrape(args.metrics)
                    cell = run_cell(
                        args.server,
                        args.token,
                        m.name,
                        requests,
                        c,
                        args.requests,
                        args.cell_seconds,
                        args.warmup if c == 1 else 0,
                        args.shed_backoff_ms / 1000,
                    )
                    after = scrape(args.metrics)
                    record = {
                        "model": m.name,
                        "arch": m.arch,
                        "precision": m.precision,
                        "provider": m.provider,
                        "input": "ids" if by_id else "text",
                        "candidates": n,
                        "concurrency": c,
                        **cell,
                        "pairs_per_s": round(cell["qps"] * n, 1),
                        **delta(after, before, m.name),
                    }
                    records.append(record)
                    print(
                        f"{m.name:14s} {record['input']:4s} N={n:<4d} C={c:<3d} p50 {cell['p50_ms']} ms  p99 "
                        f"{cell['p99_ms']}  {cell['qps']} q/s  {record['pairs_per_s']} pairs/s  shed "
                        f"{cell['shed_rate']:.1%}",
                        flush=True,
                    )
        phase = {}
        timed = [m for m in served if (m.get("store") or m["name"] == "teacher") and m["name"] in reqs100]
        if timed and args.rounds:
            phase = interleaved(args.server, args.token, timed, reqs100, args.rounds, args.provider, args.http_server)
            for row in phase.values():
                row["candidates"] = args.interleave_candidates
        print_table(records, phase)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            command = "python -m benchmarks.latency " + " ".join(sys.argv[1:])
            args.json.write_text(
                json.dumps(
                    {
                        "command": command,
                        "machine": machine(listed),
                        "seconds": round(time.perf_counter() - started, 1),
                        "records": records,
                        "interleaved": phase,
                    },
                    indent=2,
                )
                + "\n"
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
