"""The floor under the gRPC overhead: what a Rerank round trip costs with no model behind it.

Two servers, each in its own process, answer a 100-candidate Rerank with 100 results: grpcio's
plain asyncio servicer returning a canned response (``echo``), and the project's own servicer and
wrappers (auth, metrics, status mapping, message conversion) over an engine that answers at once
(``ours``: no pre stage, no batcher, no thread hop). Requests alternate between the servers;
``--gap-ms`` idles before each request as the latency benchmark's in-process leg does (an idle
server wakes more slowly than a busy one).

    .venv/bin/python -m benchmarks.grpc_floor --requests 400 --gap-ms 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from benchmarks._common import Stopwatch, percentile, write_json
from reranker.v1 import reranker_pb2 as pb
from reranker.v1 import reranker_pb2_grpc as pb_grpc

IDS = [str(1000000 + i) for i in range(100)]


def canned() -> pb.RerankResponse:
    return pb.RerankResponse(
        model="colbert",
        results=[pb.Result(id=p, index=i, score=0.5, source=pb.Result.SOURCE_STORE, model_score=0.5) for i, p in enumerate(IDS)],
    )


async def serve(kind: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    if kind == "echo":
        response = canned()

        class Echo(pb_grpc.RerankerServicer):
            async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
                return response

        pb_grpc.add_RerankerServicer_to_server(Echo(), server)
    else:
        from reranker.engine import RerankOutput, Scored
        from reranker.server.auth import Auth
        from reranker.server.interceptor import Instrumented
        from reranker.server.metrics import Metrics
        from reranker.server.service import RerankerService, add_to_server

        out = RerankOutput(
            "colbert",
            [Scored(p, i, 0.5, False, True, 0.5) for i, p in enumerate(IDS)],
            stats={"candidates": len(IDS), "truncated": 0},
        )

        class Instant:
            """An engine that answers every request at once (no pre stage, no batcher)."""

            default, models = "colbert", {"colbert": None}

            async def rerank(self, req: object, *, deadline: float | None = None) -> RerankOutput:
                return out

        metrics = Metrics()
        add_to_server(RerankerService(Instant(), metrics, Auth(None)), Instrumented(server, metrics))  # type: ignore[arg-type]
    server.add_insecure_port(f"localhost:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="round trips per server")
    ap.add_argument("--gap-ms", type=float, default=12.0, help="idle time before each request")
    ap.add_argument("--port", type=int, default=52190, help="first of two free ports")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve[0], int(args.serve[1])))
        return
    kinds = ("echo", "ours")
    procs = [
        subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_floor", "--serve", k, str(args.port + i)])
        for i, k in enumerate(kinds)
    ]
    try:
        stubs = {}
        for i, k in enumerate(kinds):
            channel = grpc.insecure_channel(f"localhost:{args.port + i}")
            grpc.channel_ready_future(channel).result(timeout=60)
            stubs[k] = pb_grpc.RerankerStub(channel)
        request = pb.RerankRequest(query="what is a flea")
        for pid in IDS:
            request.candidates.add(id=pid)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.requests + 20):
            for k in kinds if r % 2 else kinds[::-1]:
                time.sleep(args.gap_ms / 1000)
                with Stopwatch() as t:
                    stubs[k].Rerank(request, timeout=60)
                if r >= 20:  # the first rounds warm up
                    times[k].append(t.ms)
        rows = {
            k: {
                "p50_ms": round(statistics.median(v), 3),
                "p10_ms": round(percentile(v, 0.1), 3),
                "p90_ms": round(percentile(v, 0.9), 3),
                "requests": len(v),
            }
            for k, v in times.items()
        }
        result = {"command": "python -m benchmarks.grpc_floor " + " ".join(sys.argv[1:]), "gap_ms": args.gap_ms, "servers": rows}
        print(json.dumps(result, indent=2))
        write_json(args.json, result)
    finally:
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
