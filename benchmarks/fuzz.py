"""Fuzzing at volume against a real server on loopback: generated requests, then a report.

    .venv/bin/python -m benchmarks.fuzz --config benchmarks/configs/fuzz-cpu.toml --requests 5000 \\
        --json benchmarks/results/fuzz-cpu.json

Starts ``reranker serve`` from the config (it must bind 127.0.0.1; only loopback is ever targeted)
and sends a bounded number of generated requests, within a bounded time, from concurrent clients
with occasional bursts: random and mutated bytes, odd Unicode (control, zero-width, combining,
right-to-left, emoji, typed special tokens), sizes from nothing to over every limit, stored,
missing, empty and duplicate ids, unknown models, tiny deadlines and cancelled calls; client input
of 3,000 to 20,000 characters that error messages would quote (model names, missing ids); bearer
headers in odd spellings; channels that send keepalive pings every second; and SIGHUP sent to the
server every ``--sighup-every`` requests. Every answer must be OK or a precise code; INTERNAL,
UNKNOWN or UNAVAILABLE is a failure, and health must say SERVING at the end. The report counts
codes by kind, client- and server-side.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from benchmarks import fuzz_http
from benchmarks._common import DL19, Served, start_server, write_json
from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.v1 import reranker_pb2 as pb

BAD = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "UNIMPLEMENTED"}
WEIRD = [
    "",
    " ",
    "\x00",
    "\u200b\u200b",
    "\u202eevil\u202c",
    "e\u0301\u0301\u0301",
    "🦄" * 40,
    "\t\n\r",
    "\ufeffq",
    "ﬁ ﬂ ǅ",
    "[MASK]",
    "[mask] [SEP] [pad]",
    "[CLS][SEP][PAD][MASK][UNK]",
    "\x7f\x1b[31m",
    "𝔣𝔩𝔢𝔞",
    "日本語のテキスト",
    "مرحبا بالعالم",
    "a" * 2001,
    "x " * 12000,
]
KINDS = ("valid", "unicode", "sizes", "ids", "model", "raw-bytes", "mutated", "deadline", "cancel", "long-text", "auth")
AUTH = ["Bearer x", "bearer x", "BEARER x", "Basic eA==", "", "Bearer " + "x" * 3000, "Bearer  x", "Token x"]
PINGING = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]


def unicode_text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        c = rng.choice(
            [
                rng.randint(0x20, 0x7E),
                rng.randint(0xA0, 0x2FFF),
                rng.randint(0x1F300, 0x1FAFF),
                rng.randint(0, 0x1F),
                rng.randint(0xE000, 0xFFFD),
                rng.randint(0x10000, 0x10FFFF),
            ]
        )
        if not 0xD800 <= c <= 0xDFFF:
            out.append(chr(c))
    return "".join(out)


def text_of(rng: random.Random, passages: list[str]) -> str:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(passages)
    if roll < 0.7:
        return rng.choice(WEIRD)
    return unicode_text(rng, rng.choice([1, 10, 100, 1000]))


def request_of(
    rng: random.Random, kind: str, pids: list[str], passages: list[str], queries: list[str], models: list[str]
) -> pb.RerankRequest:
    n = rng.choice([1, 3, 10, 30]) if kind != "sizes" else rng.choice([0, 1, 100, 101, 150])
    query = rng.choice(queries)
    if kind in ("unicode", "sizes"):
        query = rng.choice([query, text_of(rng, passages), rng.choice(WEIRD), unicode_text(rng, rng.randint(0, 60))])
    cands = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.6 or kind == "valid":
            cands.append(pb.Candidate(id=rng.choice(pids)))
        elif roll < 0.8 or kind in ("unicode", "sizes"):
            text = text_of(rng, passages) if kind != "sizes" else rng.choice(["p " * rng.randint(0, 12500), "flea"])
            cands.append(pb.Candidate(id=unicode_text(rng, rng.randint(0, 8)), text=text))
        elif roll < 0.9:
            cands.append(pb.Candidate(id=f"missing-{rng.randint(0, 10**6)}"))
        else:
            cands.append(cands[0] if cands else pb.Candidate(id=""))
    model = "" if kind != "model" else rng.choice(["", *models, "nope", "🦄", "a" * 300, "\x00"])
    if kind == "long-text":  # strings an error message would quote
        size = rng.choice([3_000, 15_000, 20_000])
        if rng.random() < 0.5:
            model = "m" * size
        else:
            cands = [pb.Candidate(id=f"{i}" * size) for i in range(rng.choice([1, 10]))]
    return pb.RerankRequest(query=query, candidates=cands, model=model, top_k=rng.choice([0, 0, 1, 5, 10**6]))


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not buf:
            break
        op = rng.random()
        i = rng.randrange(len(buf))
        if op < 0.5:
            buf[i] = rng.randrange(256)
        elif op < 0.8:
            del buf[i:]
        else:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(buf)


def run_http(args: argparse.Namespace, served: Served, data: tuple[Any, ...]) -> dict[str, Any]:
    """The HTTP fuzz (benchmarks/fuzz_http.py): ``args.requests`` generated requests from
    ``args.concurrency`` threads, SIGHUP every ``args.sighup_every``, then health and one valid request."""
    if served.http is None:
        raise SystemExit("the server serves no HTTP API (http_port = -1?)")
    host, port = served.http.rsplit(":", 1)[0], int(served.http.rsplit(":", 1)[1])
    outcomes: Counter[tuple[str, str | int]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    started, deadline = time.monotonic(), time.monotonic() + args.max_seconds

    def one(k: int) -> None:
        rng = random.Random(args.seed * 1_000_003 + k)
        kind = rng.choice(fuzz_http.KINDS)
        code = fuzz_http.one(rng, kind, host, port, data)
        with lock:
            outcomes[(kind, code)] += 1
            if code in fuzz_http.BAD and len(failures) < 20:
                failures.append(f"{kind}: {code}")

    sent, hups = 0, 0
    with ThreadPoolExecutor(args.concurrency) as pool:
        while sent < args.requests and time.monotonic() < deadline:
            size = min(args.concurrency * 4, args.requests - sent)
            list(pool.map(one, range(sent, sent + size)))
            sent += size
            if args.sighup_every and sent // args.sighup_every > hups:
                served.proc.send_signal(signal.SIGHUP)
                hups += 1
    codes, by_kind, failed = fuzz_http.summarise(outcomes)
    with urllib.request.urlopen(f"http://{served.http}/health", timeout=10) as r:
        healthy = json.loads(r.read())["status"]
    request = urllib.request.Request(
        f"http://{served.http}/v2/rerank",
        data=json.dumps({"query": data[2][0], "documents": data[1][:3]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        still = len(json.loads(r.read())["results"]) == 3
    return {
        "transport": "http",
        "requests": sent,
        "seconds": round(time.monotonic() - started, 1),
        "concurrency": args.concurrency,
        "sighups": hups,
        "codes": codes,
        "codes_by_kind": by_kind,
        "failures_count": failed,
        "failures": failures,
        "health_after": healthy,
        "rerank_after": still,
        "server_alive": served.proc.poll() is None,
    }


def _loopback_only(target: str) -> None:
    if target.rsplit(":", 1)[0] not in ("localhost", "127.0.0.1"):
        raise SystemExit(f"refusing to fuzz {target}: loopback only")


def _report_http(args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(json.dumps(report, indent=2))
    write_json(args.json, report)
    if report["failures_count"] or report["health_after"] != "SERVING" or not report["server_alive"]:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--requests", type=int, default=5000, help="generated requests (bounded)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="hard cap on the run's duration")
    ap.add_argument("--concurrency", type=int, default=12)
    ap.add_argument("--burst-every", type=int, default=250, help="every N requests, a burst of --burst calls at once")
    ap.add_argument("--burst", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--transport",
        choices=("grpc", "http"),
        default="grpc",
        help="fuzz the gRPC API or the HTTP /rerank API (benchmarks/fuzz_http.py)",
    )
    ap.add_argument("--sighup-every", type=int, default=1000, help="send SIGHUP to the server every N requests (0 = never)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    served = start_server(args.config)
    proc, target, metrics_target = served
    _loopback_only(target)
    try:
        folder = DataFolder.open(DL19)
        run = folder.run("bm25")
        pids = sorted({p for q in run for p, _ in run[q][:100]})
        passages = [folder.passages[p] for p in pids[:500]]
        queries = [folder.queries[q] for q in sorted(run)]
        if args.transport == "http":
            return _report_http(args, run_http(args, served, (pids, passages, queries, WEIRD)))
        with RerankerClient(target) as client:
            models = [m.name for m in client.list_models()]
        lock = threading.Lock()
        outcomes: Counter[tuple[str, str]] = Counter()
        failures: list[str] = []
        deadline = time.monotonic() + args.max_seconds
        started = time.monotonic()

        def one(k: int, channel: grpc.Channel) -> None:
            rng = random.Random(args.seed * 1_000_003 + k)
            kind = rng.choice(KINDS)
            raw = channel.unary_unary("/reranker.v1.Reranker/Rerank")
            req = request_of(rng, kind, pids, passages, queries, models)
            timeout = 30.0
            metadata = [("authorization", rng.choice(AUTH))] if kind == "auth" else None
            try:
                if kind == "raw-bytes":
                    raw(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))), timeout=timeout)
                elif kind == "mutated":
                    raw(mutate(rng, req.SerializeToString()), timeout=timeout)
                elif kind == "cancel":
                    call = raw.future(req.SerializeToString(), timeout=timeout)
                    time.sleep(rng.uniform(0.0, 0.2))
                    call.cancel()
                    call.result()
                else:
                    if kind == "deadline":
                        timeout = rng.choice([0.001, 0.01, 0.05, 0.15, 0.3])
                    raw(req.SerializeToString(), timeout=timeout, metadata=metadata)
                code = "OK"
            except grpc.FutureCancelledError:
                code = "CANCELLED"
            except grpc.RpcError as exc:
                code = exc.code().name
                if code in BAD:
                    with lock:
                        failures.append(f"{kind}: {code}: {exc.details()}")
            with lock:
                outcomes[(kind, code)] += 1

        # every other channel pings every second, idle or not (the keepalive policy must allow it)
        channels = [grpc.insecure_channel(target, options=PINGING if k % 2 else []) for k in range(args.concurrency)]
        next_hup = args.sighup_every
        sent, next_burst, hups = 0, args.burst_every, 0
        with ThreadPoolExecutor(max(args.concurrency, args.burst)) as pool:
            while sent < args.requests and time.monotonic() < deadline:
                size = args.concurrency
                if args.burst_every and sent >= next_burst:  # a concurrent burst
                    size, next_burst = args.burst, next_burst + args.burst_every
                size = min(size, args.requests - sent)
                list(pool.map(lambda k: one(k, channels[k % len(channels)]), range(sent, sent + size)))
                sent += size
                if args.sighup_every and sent >= next_hup:  # log rotation: the server must neither stop nor drop work
                    proc.send_signal(signal.SIGHUP)
                    hups, next_hup = hups + 1, next_hup + args.sighup_every
        elapsed = time.monotonic() - started
        for ch in channels:
            ch.close()
        with RerankerClient(target) as client:
            healthy = client.health()
            still = len(client.rerank(queries[0], pids[:3]).results) == 3
        with urllib.request.urlopen(f"http://{metrics_target}/metrics", timeout=10) as r:
            server_codes: Counter[str] = Counter()
            for line in r.read().decode().splitlines():
                if line.startswith("grpc_server_handled_total{") and 'grpc_method="Rerank"' in line:
                    code = line.split('grpc_code="', 1)[1].split('"', 1)[0]
                    server_codes[code] += int(float(line.rsplit(" ", 1)[1]))
        codes: Counter[str] = Counter()
        for (_, code), n in outcomes.items():
            codes[code] += n
        report = {
            "requests": sent,
            "seconds": round(elapsed, 1),
            "concurrency": args.concurrency,
            "bursts": f"{args.burst} at once every {args.burst_every}",
            "sighups": hups,
            "server_alive": proc.poll() is None,
            "codes": dict(codes),
            "codes_by_kind": {k: {c: n for (kk, c), n in sorted(outcomes.items()) if kk == k} for k in KINDS},
            "server_codes_rerank": dict(server_codes),
            "internal_or_unknown": sum(n for c, n in codes.items() if c in BAD)
            + sum(n for c, n in server_codes.items() if c in BAD),
            "failures": failures[:20],
            "health_after": healthy,
            "rerank_after": still,
        }
        print(json.dumps(report, indent=2))
        write_json(args.json, report)
        if report["internal_or_unknown"] or healthy != "SERVING" or not still or not report["server_alive"]:
            sys.exit(1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
