"""The deadline-aware cascade under load: answers within the deadline, the share of each tier and the
nDCG@10 of what was answered, at 1x, 2x and 4x capacity with 200 ms and 1 s deadlines; the same runs
sent to the model alone for comparison.

    .venv/bin/python -m benchmarks.cascade --json benchmarks/results/cascade-cpu.json \\
        --plot benchmarks/results/cascade-cpu.png [--teacher ARTIFACT]

Starts ``reranker serve`` (loopback) with the shipped default (ColBERT by id from its DL19 store) as
``student``, the ``--teacher`` artifact as ``teacher`` when given, and the cascade ``auto`` = [teacher,]
student, first-stage; score cache off (requests repeat). Requests: each judged DL19 query with its
BM25 top 100 (ids, texts and BM25 scores as first_stage_score). Capacity is the rate the student alone
answers with two clients back to back; each run then sends Poisson arrivals at a multiple of it for
``--seconds`` with the deadline as the gRPC timeout. A request is *admitted* unless refused with
RESOURCE_EXHAUSTED; *answered in time* when OK within its deadline. nDCG@10 is given over the answered
requests and over all of them with the BM25 order for every request not answered (what a caller
falls back to).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from benchmarks._common import DL19, percentile, start_server, write_json
from reranker.data import DataFolder
from reranker.eval.metrics import ndcg_at_k
from reranker.v1 import reranker_pb2 as pb
from reranker.v1 import reranker_pb2_grpc as pb_grpc


def requests_of(folder: DataFolder, depth: int) -> list[tuple[str, pb.RerankRequest]]:
    """(qid, request) per judged query: its BM25 top ``depth`` with texts and BM25 scores."""
    bm25, qrels = folder.run("bm25"), folder.qrels
    out = []
    for qid in sorted(q for q in bm25 if q in qrels):
        req = pb.RerankRequest(query=folder.queries[qid])
        for pid, score in bm25[qid][:depth]:
            req.candidates.add(id=pid, text=folder.passages[pid], first_stage_score=score)
        out.append((qid, req))
    return out


async def capacity(stub: Any, reqs: list[tuple[str, pb.RerankRequest]], model: str, seconds: float) -> float:
    """Requests per second ``model`` answers with two clients sending back to back."""
    done, stop = 0, time.monotonic() + seconds

    async def client(offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < stop:
            req = pb.RerankRequest()
            req.CopyFrom(reqs[i % len(reqs)][1])
            req.model = model
            await stub.Rerank(req, timeout=30)
            done += 1
            i += 2

    started = time.monotonic()
    await asyncio.gather(client(0), client(1))
    return done / (time.monotonic() - started)


async def load_run(
    stub: Any, reqs: list[tuple[str, pb.RerankRequest]], model: str, rate: float, seconds: float, deadline: float, seed: int
) -> list[dict[str, Any]]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; one record per request."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    tasks = []

    async def send(qid: str, template: pb.RerankRequest) -> None:
        req = pb.RerankRequest()
        req.CopyFrom(template)
        req.model = model
        started = time.monotonic()
        record: dict[str, Any] = {"qid": qid}
        try:
            out = await stub.Rerank(req, timeout=deadline)
            record.update(code="OK", scored_by=out.scored_by, ranking=[r.id for r in out.results])
        except grpc.aio.AioRpcError as exc:
            record.update(code=exc.code().name, scored_by="")
        record["seconds"] = time.monotonic() - started
        records.append(record)

    start = time.monotonic()
    at = 0.0
    while at < seconds:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        qid, template = reqs[rng.randrange(len(reqs))]
        tasks.append(asyncio.ensure_future(send(qid, template)))
        at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    return records


def summary(records: list[dict[str, Any]], deadline: float, qrels: Any, bm25: dict[str, list[str]]) -> dict[str, Any]:
    codes = Counter(r["code"] for r in records)
    admitted = [r for r in records if r["code"] != "RESOURCE_EXHAUSTED"]
    in_time = [r for r in admitted if r["code"] == "OK" and r["seconds"] <= deadline]
    answered = [r for r in records if r["code"] == "OK"]
    gains = [ndcg_at_k(qrels[r["qid"]], r["ranking"], 10) for r in answered]
    every = [ndcg_at_k(qrels[r["qid"]], r["ranking"] if r["code"] == "OK" else bm25[r["qid"]], 10) for r in records]
    tiers = Counter(r["scored_by"] for r in answered)
    ok_s = [r["seconds"] * 1000 for r in answered]
    return {
        "requests": len(records),
        "codes": dict(codes),
        "admitted": len(admitted),
        "in_time_of_admitted": round(len(in_time) / max(1, len(admitted)), 4),
        "tier_share_of_answered": {t: round(n / max(1, len(answered)), 4) for t, n in sorted(tiers.items())},
        "ndcg@10_answered": round(sum(gains) / max(1, len(gains)), 4),
        "ndcg@10_all_bm25_when_unanswered": round(sum(every) / max(1, len(every)), 4),
        "p50_ms": round(percentile(ok_s, 0.5), 1) if ok_s else None,
        "p99_ms": round(percentile(ok_s, 0.99), 1) if ok_s else None,
    }


def in_time_of_all(row: dict[str, Any]) -> float:
    """Share of all requests sent that were answered within their deadline."""
    return row["in_time_of_admitted"] * row["admitted"] / max(1, row["requests"])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deadlines = sorted({r["deadline_ms"] for r in results})
    fig, axes = plt.subplots(2, len(deadlines), figsize=(5 * len(deadlines), 6.5), sharey="row", sharex=True, squeeze=False)
    for col, d in enumerate(deadlines):
        for mode, style in (("cascade", "-o"), ("model alone", "--s")):
            rows = sorted((r for r in results if r["deadline_ms"] == d and r["mode"] == mode), key=lambda r: r["load"])
            loads = [r["load"] for r in rows]
            axes[0][col].plot(loads, [in_time_of_all(r) for r in rows], style, label=mode)
            axes[1][col].plot(loads, [r["ndcg@10_all_bm25_when_unanswered"] for r in rows], style, label=mode)
        axes[0][col].set_title(f"deadline {d} ms")
        axes[1][col].set_xlabel("offered load (x capacity)")
        for ax in axes[:, col]:
            ax.set_xticks(sorted({r["load"] for r in results}))
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("requests answered in time")
    axes[1][0].set_ylabel("nDCG@10, DL19\n(BM25 order when unanswered)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from reranker.provision import ensure_default

    artifact, store = ensure_default(DL19)
    folder = DataFolder.open(DL19)
    reqs = requests_of(folder, args.depth)
    qrels = folder.qrels
    bm25 = {qid: [p for p, _ in folder.run("bm25")[qid][: args.depth]] for qid, _ in reqs}
    tiers = ['"teacher", ' if args.teacher else "", '"student", "first-stage"']
    config = (
        '[server]\ncache_mb = 0\ngrace_seconds = 2\n[runtime]\nprovider = "cpu"\n'
        f'[[models]]\nname = "student"\nartifact = "{artifact}"\nstore = "{store}"\n'
        + (f'[[models]]\nname = "teacher"\nartifact = "{args.teacher.resolve()}"\n' if args.teacher else "")
        + f'[[cascades]]\nname = "auto"\ntiers = [{"".join(tiers)}]\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server.toml").write_text(config)
        served = start_server(Path(tmp) / "server.toml")
        try:
            async with grpc.aio.insecure_channel(served.grpc) as channel:
                stub = pb_grpc.RerankerStub(channel)
                await capacity(stub, reqs, "student", 3.0)  # warm
                cap = await capacity(stub, reqs, "student", args.capacity_seconds)
                print(f"capacity of the student alone: {cap:.1f} requests/s")
                results = []
                for deadline in args.deadlines:
                    for load in args.loads:
                        for mode, model in (("cascade", "auto"), ("model alone", "student")):
                            records = await load_run(stub, reqs, model, cap * load, args.seconds, deadline, seed=int(load * 100))
                            row = {"mode": mode, "deadline_ms": round(deadline * 1000), "load": load}
                            row.update(summary(records, deadline, qrels, bm25))
                            results.append(row)
                            print(
                                f"{mode:<12} deadline {deadline * 1000:>5.0f} ms load {load}x: in time "
                                f"{row['in_time_of_admitted']:.3f} of {row['admitted']}/{row['requests']} admitted, tiers "
                                f"{row['tier_share_of_answered']}, nDCG@10 {row['ndcg@10_answered']:.4f} answered / "
                                f"{row['ndcg@10_all_bm25_when_unanswered']:.4f} all"
                            )
                            await asyncio.sleep(2.0)  # let the queue drain between runs
        finally:
            served.proc.terminate()
            served.proc.wait(timeout=30)
    ndcg = {
        "bm25": round(sum(ndcg_at_k(qrels[q], bm25[q], 10) for q, _ in reqs) / len(reqs), 4),
    }
    return {
        "setup": {
            "tiers": ["teacher"] * bool(args.teacher) + ["student", "first-stage"],
            "student": "the shipped default ColBERT by id from its DL19 store",
            "teacher": str(args.teacher) if args.teacher else None,
            "queries": len(reqs),
            "candidates": args.depth,
            "seconds_per_run": args.seconds,
            "capacity_rps": round(cap, 2),
        },
        "reference": ndcg,
        "results": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=None, help="a BERT-cat ONNX artifact: the cascade's first tier")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--loads", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 2.0, 4.0])
    ap.add_argument("--deadlines", type=lambda s: [float(x) for x in s.split(",")], default=[0.2, 1.0], help="seconds")
    ap.add_argument("--seconds", type=float, default=20.0, help="per run")
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--replot", type=Path, default=None, help="only draw --plot from this earlier --json")
    args = ap.parse_args()
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["results"], args.plot)
        return
    record = asyncio.run(run(args))
    if args.plot is not None:
        plot(record["results"], args.plot)
    write_json(args.json, record)


if __name__ == "__main__":
    main()
