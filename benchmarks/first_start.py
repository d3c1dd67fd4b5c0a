"""A newcomer's first start: ``reranker serve`` with nothing cached, to SERVING, to the first answer,
and to the passage store being ready (install excluded: the environment exists).

    .venv/bin/python -m benchmarks.first_start --json benchmarks/results/first-start-cpu.json

Starts ``reranker serve --data DL19`` (what ``make run`` runs) with an empty ``$RERANKER_HOME`` on
free loopback ports, polls gRPC health, sends a request of one DL19 query's BM25 top 100 by id as soon
as the server is SERVING and every few seconds while the store builds (where each answer's scores
came from: text or store), and polls ListModels until the store is ready.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

from benchmarks._common import DL19, ROOT, percentile, run_facts, write_json
from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.v1 import reranker_pb2 as pb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sources(answer: pb.RerankResponse) -> dict[str, int]:
    return dict(Counter(pb.Result.Source.Name(r.source) for r in answer.results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DL19)
    ap.add_argument("--max-wait", type=float, default=900.0, help="seconds to wait for SERVING and for the store")
    ap.add_argument("--probe-every", type=float, default=5.0, help="seconds between requests while the store builds")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    folder = DataFolder.open(args.data)
    run = folder.run("bm25")
    qid = sorted(run)[0]
    query, ids = folder.queries[qid], [p for p, _ in run[qid][:100]]
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="reranker-home-"))
    log = home / "serve.log"
    command = [sys.executable, "-m", "reranker.cli", "serve", "--data", str(args.data), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--metrics-port", "-1", "--http-port", "-1"]
    started = time.monotonic()
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "RERANKER_HOME": str(home)}, stdout=out, stderr=out)
    record: dict[str, object] = {**run_facts(), "passages": len(folder.passages), "candidates": len(ids)}
    probes: list[dict[str, object]] = []
    try:
        with RerankerClient(f"127.0.0.1:{port}", timeout=30) as client:
            while True:
                if server.poll() is not None:
                    sys.exit(f"first_start: the server exited {server.returncode}; see {log}")
                try:
                    if client.health() == "SERVING":
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() - started > args.max_wait:
                    sys.exit(f"first_start: not SERVING after {args.max_wait} s; see {log}")
                time.sleep(0.1)
            record["serving_s"] = round(time.monotonic() - started, 2)
            sent = time.monotonic()
            first = client.rerank(query, ids)
            record["first_answer_s"] = round(time.monotonic() - started, 2)
            record["first_answer_ms"] = round(1000 * (time.monotonic() - sent), 1)
            record["first_answer_sources"] = _sources(first)
            print(
                f"first_start: SERVING after {record['serving_s']} s, first answer ({record['first_answer_sources']}) at "
                f"{record['first_answer_s']} s",
                flush=True,
            )
            while True:
                info = client.list_models()[0]
                if info.store_status != "building":
                    break
                sent = time.monotonic()
                answer = client.rerank(query, ids)
                probes.append(
                    {
                        "at_s": round(sent - started, 1),
                        "store_progress": round(info.store_progress, 3),
                        "ms": round(1000 * (time.monotonic() - sent), 1),
                        "sources": _sources(answer),
                    }
                )
                print(f"first_start: {probes[-1]}", flush=True)
                if time.monotonic() - started > args.max_wait:
                    sys.exit(f"first_start: the store was not ready after {args.max_wait} s; see {log}")
                time.sleep(args.probe_every)
            record["store_status"] = info.store_status
            record["store_ready_s"] = round(time.monotonic() - started, 1)
            record["store_passages"] = info.store_passages
            times = []
            for _ in range(10):
                sent = time.monotonic()
                answer = client.rerank(query, ids)
                times.append(1000 * (time.monotonic() - sent))
            record["after_ready_sources"] = _sources(answer)
            record["after_ready_p50_ms"] = round(percentile(times, 0.5), 1)
            record["while_building_p50_ms"] = round(percentile([float(p["ms"]) for p in probes], 0.5), 1) if probes else None
            record["probes"] = probes
    finally:
        server.terminate()
        server.wait(30)
    lines = [line for line in log.read_text().splitlines() if "assembl" in line or "store" in line or "serving" in line]
    # no machine paths in a committed record
    record["server_log"] = [line.replace(str(home), "$RERANKER_HOME").replace(f"{ROOT}/", "") for line in lines[:20]]
    print(
        f"first_start: SERVING {record['serving_s']} s, first answer {record['first_answer_s']} s, "
        f"store ready {record.get('store_ready_s')} s ({record.get('store_status')})"
    )
    write_json(args.json, record)


if __name__ == "__main__":
    main()
