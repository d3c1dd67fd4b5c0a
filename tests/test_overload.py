"""Issue 14: abandoned work stops at its next unit and holds its bounds until then; a cheap request
never waits behind another's passage encoding; requests that cannot start in time are refused at
admission. The engine runs on an event loop here, with a deliberately slow (sleeping) runtime."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.engine import BatcherConfig, Engine, EngineConfig, ModelSpec, RerankInput, RuntimeConfig, passage_encoder
from reranker.errors import CapacityError, DeadlineError
from reranker.store.build import build_store

from .conftest import DL19_MINI

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)
CHUNK_S = 0.1
"""Seconds each chunk of passages sent as text takes to encode (slowed down)."""


class Drops(Counter):
    """A StatsSink that counts dropped pairs by stage."""

    def batch(self, *args) -> None: ...
    def store_lookups(self, *args) -> None: ...
    def cache(self, *args) -> None: ...
    def queue_depth(self, *args) -> None: ...

    def dropped(self, model: str, items: int, stage: str) -> None:
        self[stage] += items


@pytest.fixture(scope="module")
def colbert(tiny_exports, tmp_path_factory) -> tuple[str, str, list[str]]:
    folder = DataFolder.open(DL19_MINI)
    artifact = tiny_exports["colbert"][1]
    store = tmp_path_factory.mktemp("overload") / "store"
    build_store(
        Artifact.open(artifact), folder.passages, store, encode=passage_encoder(Artifact.open(artifact), CPU), progress=False
    )
    return str(artifact), str(store), sorted(folder.passages)


def engine_of(colbert, sink: Drops, **cfg) -> tuple[Engine, list[float]]:
    """An engine whose passage encoding takes CHUNK_S per chunk of 4; returns it and the chunk start times."""
    artifact, store, _ = colbert
    settings = {"pre_workers": 1, "warmup": False, "max_queue_ms": 0.0, "cache_mb": 0, **cfg}
    engine = Engine.from_config(
        EngineConfig(
            models=(ModelSpec("m", artifact, store),),
            runtime=CPU,
            batching=BatcherConfig(max_batch_size=4, maxsim_batch_pairs=4),
            **settings,
        ),
        sink,
    )
    scorer = engine.models["m"].prepare.scorer
    real, chunks = scorer.encode_passages, []

    def slow(*arrays):
        chunks.append(time.monotonic())
        time.sleep(CHUNK_S)
        return real(*arrays)

    scorer.encode_passages = slow
    return engine, chunks


def texts(n: int) -> RerankInput:
    return RerankInput("what is a flea", [f"t{i}" for i in range(n)], [f"fleas are insects number {i}" for i in range(n)])


def test_an_expired_request_stops_encoding_at_the_next_chunk(colbert) -> None:
    async def go() -> tuple[float, list[float]]:
        sink = Drops()
        engine, chunks = engine_of(colbert, sink)
        started = time.monotonic()
        with pytest.raises(DeadlineError):
            await engine.rerank(texts(40), deadline=started + 0.25)  # 10 chunks = 1 s of encoding
        raised = time.monotonic() - started
        await asyncio.sleep(0.5)
        assert sink["pre"] == 40
        assert engine.admission.pending == 0 and engine.admission.pending_encodes == 0
        await engine.close()
        return raised, chunks

    raised, chunks = asyncio.run(go())
    assert raised < 0.25 + 2 * CHUNK_S
    assert len(chunks) <= 4, f"{len(chunks)} chunks were encoded for a request abandoned after 2.5 chunks"


def test_a_cancelled_request_stops_and_holds_its_bounds_until_its_work_ends(colbert) -> None:
    async def go() -> None:
        sink = Drops()
        engine, chunks = engine_of(colbert, sink)
        task = asyncio.create_task(engine.rerank(texts(40)))
        await asyncio.sleep(0.25)
        task.cancel()  # what gRPC does when the client cancels
        with pytest.raises(asyncio.CancelledError):
            await task
        # the chunk running now still holds the pre-stage bounds: nothing more is admitted on its behalf
        assert engine.admission.pending == 1 and engine.admission.pending_encodes == 40
        await asyncio.sleep(2 * CHUNK_S)
        assert engine.admission.pending == 0 and engine.admission.pending_encodes == 0
        assert engine.admission.ahead_s == 0.0
        assert len(chunks) <= 4 and sink["pre"] == 40
        await engine.close()

    asyncio.run(go())


def test_a_cheap_request_never_waits_behind_passage_encoding(colbert) -> None:
    _, _, pids = colbert

    async def go() -> float:
        engine, _ = engine_of(colbert, Drops())
        heavy = asyncio.create_task(engine.rerank(texts(40)))  # 1 s of encoding on the only pre worker
        await asyncio.sleep(0.15)
        started = time.monotonic()
        out = await engine.rerank(RerankInput("what is a flea", pids[:3], [""] * 3))
        took = time.monotonic() - started
        assert len(out.results) == 3 and not heavy.done()
        assert len((await heavy).results) == 40
        await engine.close()
        return took

    assert asyncio.run(go()) < 0.5  # behind the encoding it would take about 0.85 s


def test_requests_that_cannot_start_in_time_are_refused_at_admission(colbert) -> None:
    """With a queue-time bound, the estimate of the admitted work ahead refuses a request at once
    (RESOURCE_EXHAUSTED) instead of letting it wait; one that cannot end before its own deadline too."""
    _, _, pids = colbert

    async def go() -> None:
        engine, _ = engine_of(colbert, Drops(), max_queue_ms=300.0)
        batcher = engine.models["m"].batcher
        real = batcher._run_batch

        def slow(pairs):
            time.sleep(0.05)  # 50 ms per batch of at most 4 pairs
            return real(pairs)

        batcher._run_batch = slow
        ids = RerankInput("what is a flea", pids[:16], [""] * 16)
        await engine.rerank(ids)  # learns the cost per pair: about 12 ms
        outcomes: list[tuple[str, float]] = []

        async def one() -> None:
            started = time.monotonic()
            try:
                await engine.rerank(ids)
                outcomes.append(("OK", time.monotonic() - started))
            except CapacityError:
                outcomes.append(("SHED", time.monotonic() - started))

        await asyncio.gather(*(one() for _ in range(10)))
        ok = [s for code, s in outcomes if code == "OK"]
        shed = [s for code, s in outcomes if code == "SHED"]
        assert 1 <= len(ok) <= 4 and len(shed) >= 6, outcomes
        assert max(shed) < 0.01, shed  # refused at once, not after waiting
        assert max(ok) < 0.3 + 0.2 + 0.3, ok  # the bound, its own work, slack for a busy machine
        blocker = asyncio.create_task(engine.rerank(ids))
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(CapacityError, match="deadline"):
            await engine.rerank(ids, deadline=time.monotonic() + 0.1)  # 200 ms ahead, 100 ms left
        assert time.monotonic() - started < 0.01
        await blocker
        assert engine.admission.ahead_s == pytest.approx(0.0, abs=1e-9)
        await engine.close()

    asyncio.run(go())


def test_a_client_cancelling_over_grpc_stops_the_encoding_and_counts_the_drop(colbert) -> None:
    from reranker.client import RerankerClient
    from reranker.server.config import ServerConfig

    from .test_server import launch, metric

    artifact, store, _ = colbert
    cfg = ServerConfig(
        models=(ModelSpec("m", artifact, store),),
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        http_port=0,
        runtime=CPU,
        cache_mb=0,
        batching=BatcherConfig(max_batch_size=4, maxsim_batch_pairs=4),
        pre_workers=1,
    )
    server = launch(cfg)
    try:
        scorer = server.running.engine.models["m"].prepare.scorer
        real, chunks = scorer.encode_passages, []

        def slow(*arrays):
            chunks.append(time.monotonic())
            time.sleep(CHUNK_S)
            return real(*arrays)

        scorer.encode_passages = slow
        req = texts(40)
        with RerankerClient(server.target) as client:
            call = client.stub.Rerank.future(client_request(req), timeout=30)
            time.sleep(0.25)
            call.cancel()
            time.sleep(3 * CHUNK_S)
            assert client.health() == "SERVING"
        text = server.metrics()
    finally:
        server.stop()
    assert len(chunks) <= 5, f"{len(chunks)} chunks encoded for a call cancelled after 2.5"
    assert metric(text, "reranker_dropped_pairs_total", model="m", stage="pre") == 40
    assert metric(text, "reranker_requests_total", model="m", code="CANCELLED") == 1


def client_request(req: RerankInput):
    from reranker.v1 import reranker_pb2 as pb

    return pb.RerankRequest(
        query=req.query, candidates=[pb.Candidate(id=i, text=t) for i, t in zip(req.ids, req.texts, strict=True)]
    )
