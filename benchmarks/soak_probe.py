"""A client that is not starved, for benchmarks/soak.py: its own process at a higher CPU priority
than the load's clients, one gRPC channel, one small request every --interval seconds; prints one JSON
object with every answer's (seconds from start, client-side ms, status code).

    .venv/bin/python -m benchmarks.soak_probe --target 127.0.0.1:50051 --seconds 120
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import grpc

from benchmarks._common import DL19
from reranker.client import RerankerClient
from reranker.data import DataFolder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--candidates", type=int, default=10)
    args = ap.parse_args()
    with contextlib.suppress(OSError):  # ahead of the load's clients (and the server) when the cores are contended
        os.setpriority(os.PRIO_PROCESS, 0, -5)
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    qids = sorted(run)
    records = []
    with RerankerClient(args.target, timeout=30) as client:
        with contextlib.suppress(grpc.RpcError):  # a connection, whatever the answer (the server may be shedding)
            client.rerank(folder.queries[qids[0]], [p for p, _ in run[qids[0]][: args.candidates]])
        started = time.monotonic()
        k = 0
        while time.monotonic() - started < args.seconds:
            q = qids[k % len(qids)]
            k += 1
            t0 = time.monotonic()
            try:
                client.rerank(folder.queries[q], [p for p, _ in run[q][: args.candidates]])
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            records.append((round(t0 - started, 3), round(1000 * (time.monotonic() - t0), 2), code))
            time.sleep(max(0.0, args.interval - (time.monotonic() - t0)))
    print(json.dumps({"priority": os.getpriority(os.PRIO_PROCESS, 0), "records": records}))


if __name__ == "__main__":
    main()
