"""A real gRPC server on a loopback port, with tiny exported models."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact
from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.engine import BatcherConfig, CascadeSpec, Limits, LocalEngine, RuntimeConfig, passage_encoder
from reranker.server.app import Running, start
from reranker.server.config import ModelSpec, ServerConfig, load_config
from reranker.store import PassageStore
from reranker.store.build import build_store
from reranker.v1 import reranker_pb2 as pb

from .conftest import DL19_MINI

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)


@dataclass
class Live:
    running: Running
    loop: asyncio.AbstractEventLoop
    target: str

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.running.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(timeout=30)


def launch(cfg: ServerConfig) -> Live:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(start(cfg), loop).result(timeout=60)
    return Live(running, loop, f"127.0.0.1:{running.port}")


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def folder() -> DataFolder:
    return DataFolder.open(DL19_MINI)


@pytest.fixture(scope="module")
def setup(tiny_exports, folder, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("server")
    colbert = tiny_exports["colbert"][1]
    art = Artifact.open(colbert)
    build_store(art, folder.passages, root / "store", encode=passage_encoder(art, CPU), progress=False)
    models = (
        ModelSpec("student", str(colbert), str(root / "store")),
        ModelSpec("teacher", str(tiny_exports["bert_cat"][1]), limits=Limits(max_candidates=5)),
    )
    cfg = ServerConfig(
        models=models,
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        http_port=0,
        runtime=CPU,
        batching=BatcherConfig(max_wait_s=0.05),
        cache_mb=0,  # tests send the same request again to watch batching, limits and metrics
        cascades=(CascadeSpec("auto", ("teacher", "student", "first-stage")),),
    )
    return {"cfg": cfg, "root": root, "colbert": colbert}


@pytest.fixture(scope="module")
def live(setup) -> Iterator[Live]:
    server = launch(setup["cfg"])
    yield server
    server.stop()


def request_of(folder: DataFolder, n: int = 8) -> tuple[str, list[str]]:
    qid = sorted(folder.queries)[1]
    return folder.queries[qid], [p for p, _ in folder.run("bm25")[qid][:n]]


def test_health_and_list_models(live) -> None:
    with RerankerClient(live.target) as client:
        assert client.health() == "SERVING"
        assert client.health("reranker.v1.Reranker") == "SERVING"
        models = {m.name: m for m in client.list_models()}
    assert set(models) == {"student", "teacher"}
    assert models["student"].is_default and models["student"].arch == "colbert"
    assert models["student"].store_passages > 0 and models["teacher"].store_passages == 0
    assert models["teacher"].max_candidates == 5 and models["student"].max_query_tokens == 10
    assert models["student"].provider == "CPUExecutionProvider"
    assert models["student"].score_kind.startswith("MaxSim") and models["teacher"].max_passage_tokens == 38
    warm = live.metrics()  # warmed up through the request path, but the warm-up is not in the statistics
    assert metric(warm, "reranker_batch_size_count") == 0 and metric(warm, "reranker_requests_total") == 0


def test_results_equal_the_in_process_scorer(live, setup, folder) -> None:
    query, pids = request_of(folder)
    with RerankerClient(live.target) as client:
        by_id = client.rerank(query, pids)
        by_text = client.rerank(query, [(p, folder.passages[p]) for p in pids[:5]], model="teacher", top_k=3)
    with LocalEngine.of(setup["colbert"], runtime=CPU, warmup=False) as local:  # texts, no store
        want, truncated = local.scores(query, pids, [folder.passages[p] for p in pids], aggregate="first")
    got = np.zeros(len(pids), dtype=np.float32)
    for r in by_id.results:
        assert r.id == pids[r.index]
        got[r.index] = r.score
        assert r.truncated == truncated[r.index]
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
    scores = [r.score for r in by_id.results]
    assert scores == sorted(scores, reverse=True) and by_id.model == "student"
    assert by_id.timing.total_ms > 0
    with LocalEngine.of(setup["cfg"].models[1].artifact, runtime=CPU, warmup=False) as local:
        t_want, _ = local.scores(query, pids[:5], [folder.passages[p] for p in pids[:5]])
    assert len(by_text.results) == 3 and by_text.model == "teacher"
    assert [r.index for r in by_text.results] == np.argsort(-np.array(t_want), kind="stable")[:3].tolist()


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"query": "", "candidates": ["a"]}, grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
        ({"query": "q", "candidates": []}, grpc.StatusCode.INVALID_ARGUMENT, "no candidates"),
        (
            {"query": "q", "candidates": [("a", "t")] * 6, "model": "teacher"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 5 per request",
        ),
        ({"query": "q", "candidates": ["a"], "model": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (
            {"query": "q", "candidates": ["missing-1", ("x", "text"), "missing-2"]},
            grpc.StatusCode.NOT_FOUND,
            "'missing-1', 'missing-2'",
        ),
        (
            {"query": "one two three four five six seven eight nine ten eleven", "candidates": [("a", "t")]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "never truncated",
        ),
        (
            {"query": "q", "candidates": [("a", "t")], "aggregate": "mean"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "aggregate 'mean' is not one of max, first-max, first",
        ),
    ],
)
def test_bad_requests_get_precise_codes(live, kwargs, code, message) -> None:
    with RerankerClient(live.target) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.rerank(kwargs.pop("query"), kwargs.pop("candidates"), **kwargs)
        assert info.value.code() == code
        assert message in info.value.details()
        assert client.health() == "SERVING"


def test_long_texts_are_scored_in_windows_over_grpc(live, folder) -> None:
    """A text longer than the model reads is scored window by window (ListModels says how); the
    result counts its windows and is not truncated; ``first`` cuts it as a store build does."""
    query, pids = request_of(folder, 3)
    long_text = " ".join(folder.passages[p] for p in pids)
    with RerankerClient(live.target) as client:
        info = {m.name: m for m in client.list_models()}["teacher"]
        windowed = client.rerank(query, [("long", long_text), ("short", "fleas")], model="teacher")
        cut = client.rerank(query, [("long", long_text)], model="teacher", aggregate="first")
    assert (info.window_tokens, info.window_stride, info.aggregate) == (38, 19, "max")
    assert (info.max_windows_per_candidate, info.max_windows_per_request) == (16, 1000)
    got = {r.id: r for r in windowed.results}
    assert got["long"].windows > 2 and not got["long"].truncated and got["short"].windows in (0, 1)
    assert cut.results[0].truncated and cut.results[0].windows in (0, 1)
    assert got["long"].model_score >= cut.results[0].model_score - 1e-4  # max over windows, the first among them


def test_a_cascade_over_grpc_says_which_tier_scored_and_why(live, folder) -> None:
    query, pids = request_of(folder, 3)
    candidates = [(p, folder.passages[p], float(3 - i)) for i, p in enumerate(pids)]
    before = live.metrics()
    with RerankerClient(live.target) as client:
        listed = client.stub.ListModels(pb.ListModelsRequest())
        best = client.rerank(query, candidates, model="auto", timeout=30)
        pinned = client.rerank(query, candidates, model="auto", tier="first-stage")
        with pytest.raises(grpc.RpcError) as info:
            client.rerank(query, candidates, model="auto", tier="bm25")
    assert [(c.name, list(c.tiers), c.reserve_ms) for c in listed.cascades] == [
        ("auto", ["teacher", "student", "first-stage"], 20)
    ]
    # the teacher, unless work that an earlier test abandoned still runs and its estimate says late
    assert best.model == "auto" and best.scored_by in ("teacher", "student")
    assert best.reason.endswith(f"{best.scored_by}: estimated to answer in time")
    assert pinned.scored_by == "first-stage" and [r.id for r in pinned.results] == pids
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "teacher, student, first-stage" in info.value.details()
    after = live.metrics()
    assert (
        metric(after, "reranker_cascade_answers_total", cascade="auto", tier=best.scored_by)
        - metric(before, "reranker_cascade_answers_total", cascade="auto", tier=best.scored_by)
        == 1
    )
    assert metric(after, "reranker_requests_total", model="auto", code="INVALID_ARGUMENT") >= 1


def test_concurrent_requests_share_batches_and_metrics_move(live, folder) -> None:
    query, pids = request_of(folder, 16)
    before = live.metrics()
    with RerankerClient(live.target) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: client.rerank(query, [p]), pids))
    assert all(len(r.results) == 1 for r in results)
    after = live.metrics()
    batches = metric(after, "reranker_batch_size_count", model="student") - metric(
        before, "reranker_batch_size_count", model="student"
    )
    pairs = metric(after, "reranker_batch_size_sum", model="student") - metric(before, "reranker_batch_size_sum", model="student")
    assert pairs == 16 and batches < 16, "single-candidate requests never shared a batch"
    assert (
        metric(after, "reranker_requests_total", model="student", code="OK")
        - metric(before, "reranker_requests_total", model="student", code="OK")
        == 16
    )
    assert metric(after, "reranker_store_lookups_total", model="student", result="hit") > 0
    assert metric(after, "grpc_server_handled_total", grpc_method="Rerank", grpc_code="OK") >= 16
    assert "reranker_queue_duration_seconds_bucket" in after and "reranker_inference_duration_seconds" in after


def test_token_required_when_configured(setup, tmp_path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    server = launch(setup["cfg"].replace(token_file=str(tmp_path / "token")))
    try:
        with RerankerClient(server.target) as anonymous, pytest.raises(grpc.RpcError) as info:
            anonymous.list_models()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with RerankerClient(server.target, token="wrong") as wrong, pytest.raises(grpc.RpcError) as info:
            wrong.list_models()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with RerankerClient(server.target, token="s3cret") as client:
            assert len(client.list_models()) == 2
            assert client.health() == "SERVING"
    finally:
        server.stop()


def _self_signed(directory: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subj = "/CN=localhost" if name == "server" else f"/CN=reranker-test-{name}"
    if ca is None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "2",
                "-subj",
                subj,
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
    else:
        csr = directory / f"{name}.csr"
        subprocess.run(
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subj],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-out", cert, "-days", "2"],
            check=True,
            capture_output=True,
        )
    return key, cert


def test_tls_and_mutual_tls(setup, tmp_path) -> None:
    key, cert = _self_signed(tmp_path, "server")
    ca = _self_signed(tmp_path, "client-ca")
    client_key, client_cert = _self_signed(tmp_path, "client", ca)
    server = launch(setup["cfg"].replace(host="localhost", tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(ca[1])))
    target = f"localhost:{server.running.port}"
    try:
        with RerankerClient(target, tls_ca=cert, tls_cert=client_cert, tls_key=client_key) as client:
            assert client.health() == "SERVING"
        with RerankerClient(target, tls_ca=cert, timeout=5) as no_client_cert, pytest.raises(grpc.RpcError):
            no_client_cert.health()
        with RerankerClient(target, timeout=5) as plaintext, pytest.raises(grpc.RpcError):
            plaintext.health()
    finally:
        server.stop()


def test_shutdown_under_load_loses_no_admitted_request(setup, folder) -> None:
    cfg = setup["cfg"].replace(grace_seconds=20.0)
    server = launch(cfg)
    query, pids = request_of(folder, 20)
    texts = [(p, folder.passages[p]) for p in pids[:5]]
    outcomes: list[object] = []

    def call(_: int) -> object:
        with RerankerClient(server.target, timeout=30) as client:
            try:
                return client.rerank(query, texts, model="teacher")
            except grpc.RpcError as exc:
                return exc.code()

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(call, i) for i in range(12)]
        time.sleep(0.3)
        stopping = asyncio.run_coroutine_threadsafe(server.running.stop(), server.loop)
        time.sleep(0.05)
        with RerankerClient(server.target, timeout=5) as probe:
            try:
                status = probe.health()
            except grpc.RpcError as exc:
                status = exc.code().name
        outcomes = [f.result() for f in futures]
        stopping.result(timeout=30)
    assert status != "SERVING"
    answered = [o for o in outcomes if not isinstance(o, grpc.StatusCode)]
    refused = [o for o in outcomes if isinstance(o, grpc.StatusCode)]
    assert all(len(r.results) == 5 for r in answered)
    assert answered, "no request was admitted before shutdown"
    assert all(code == grpc.StatusCode.UNAVAILABLE for code in refused), refused


def test_config_file_round_trip(setup, tmp_path) -> None:
    colbert = setup["colbert"]
    (tmp_path / "server.toml").write_text(f'''
default_model = "b"
[server]
port = 0
metrics_port = -1
http_port = 0
[batching]
max_batch_size = 32
[runtime]
provider = "cpu"
[[models]]
name = "a"
artifact = "{colbert}"
store = "{setup["root"] / "store"}"
max_candidates = 50
[[models]]
name = "b"
artifact = "{colbert}"
''')
    cfg = load_config(tmp_path / "server.toml")
    assert cfg.default == "b" and cfg.models[0].limits.max_candidates == 50 and cfg.batching.max_batch_size == 32
    (tmp_path / "bad.toml").write_text('[server]\nprot = 1\n[[models]]\nname = "a"\nartifact = "x"\n')
    with pytest.raises(Exception, match="unknown keys \\['prot'\\]"):
        load_config(tmp_path / "bad.toml")


def test_store_of_another_artifact_is_refused_at_start(setup, tiny_exports) -> None:
    from reranker.errors import ArtifactError

    with pytest.raises(ArtifactError, match="built for another artifact"):
        PassageStore.open(setup["root"] / "store", Artifact.open(tiny_exports["tk"][1]))


def test_generated_grpc_code_is_in_sync(tmp_path) -> None:
    tools = pytest.importorskip("grpc_tools.protoc")
    root = Path(__file__).resolve().parents[1]
    args = [
        "protoc",
        f"-I{root / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(root / "proto/reranker/v1/reranker.proto"),
    ]
    assert tools.main(args) == 0
    for name in ("reranker_pb2.py", "reranker_pb2.pyi", "reranker_pb2_grpc.py"):
        assert (tmp_path / "reranker/v1" / name).read_text() == (root / "reranker/v1" / name).read_text(), (
            f"reranker/v1/{name} is stale: run 'make proto'"
        )


def test_health_is_not_serving_while_models_load(setup, monkeypatch) -> None:
    import socket

    import reranker.server.app as app

    real = app.load_engine
    release = threading.Event()

    def slow_load(cfg, metrics):
        release.wait(timeout=30)
        return real(cfg, metrics)

    monkeypatch.setattr(app, "load_engine", slow_load)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    starting = asyncio.run_coroutine_threadsafe(start(setup["cfg"].replace(port=port)), loop)
    status, code = None, None
    with RerankerClient(f"127.0.0.1:{port}", timeout=2) as client:
        for _ in range(100):
            try:
                status = client.health()
                break
            except grpc.RpcError:
                time.sleep(0.05)
        try:
            client.list_models()
        except grpc.RpcError as exc:
            code = exc.code()
    release.set()
    running = starting.result(timeout=60)
    try:
        assert status == "NOT_SERVING" and code == grpc.StatusCode.UNAVAILABLE
        with RerankerClient(f"127.0.0.1:{port}") as client:
            assert client.health() == "SERVING"
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(timeout=30)


def test_requests_waiting_to_be_prepared_are_bounded(setup, folder) -> None:
    """Backpressure covers the pre stage (passages sent as text are encoded there), not only the queue."""
    server = launch(setup["cfg"].replace(pre_workers=1, max_pending_requests=1))
    query, pids = request_of(folder, 16)
    texts = [(f"text-{p}", folder.passages[p] * 3) for p in pids]  # ids the store lacks: encoded
    scorer = server.running.engine.models["student"].prepare.scorer
    encode = scorer.encode_passages

    def slow(*arrays):  # tiny models encode too fast for requests to overlap on a busy machine
        time.sleep(0.3)
        return encode(*arrays)

    scorer.encode_passages = slow

    def call(_: int) -> grpc.StatusCode:
        with RerankerClient(server.target, timeout=60) as client:
            try:
                client.rerank(query, texts)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(8)))
    finally:
        server.stop()
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
