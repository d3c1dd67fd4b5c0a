"""Failure kinds users reported against re-ranking servers, replayed on a real server on loopback:
damaged stores, NaN states, unbounded error text, client keepalive pings, SIGHUP, the auth surface,
gauges and admission after abandoned work."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reranker.artifact import Artifact
from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.engine import BatcherConfig, LocalEngine, RuntimeConfig, passage_encoder
from reranker.engine.admission import Admission
from reranker.errors import ArtifactError, quoted, some
from reranker.fusion import FusionRule
from reranker.server.auth import Auth
from reranker.server.config import ModelSpec, ServerConfig
from reranker.store import PassageStore
from reranker.store import reader as store_reader
from reranker.store.build import build_store
from reranker.store.compress import CodecConfig
from reranker.v1 import reranker_pb2 as pb
from reranker.v1 import reranker_pb2_grpc as pb_grpc

from .conftest import DL19_MINI
from .test_server import launch, metric

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder() -> DataFolder:
    return DataFolder.open(DL19_MINI)


@pytest.fixture(scope="module")
def stores(tiny_exports, folder, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening")
    art = Artifact.open(tiny_exports["colbert"][1])
    enc = passage_encoder(art, CPU)
    build_store(art, folder.passages, root / "fp16", encode=enc, progress=False)
    build_store(
        art,
        folder.passages,
        root / "residual",
        encode=enc,
        progress=False,
        codec=CodecConfig("residual", nbits=2, centroids=8, sample_passages=24, kmeans_iters=3),
    )
    return {"fp16": root / "fp16", "residual": root / "residual", "artifact": tiny_exports["colbert"][1]}


def student_config(stores: dict[str, Path], store: str, **settings) -> ServerConfig:
    """The tiny ColBERT "student" with ``store``, on free loopback ports (metrics and HTTP included)."""
    defaults = {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": 0, "runtime": CPU, "cache_mb": 0}
    return ServerConfig(models=(ModelSpec("student", str(stores["artifact"]), store),), **{**defaults, **settings})


def _damaged_copy(src: Path, dst: Path, passage: int, kind: str) -> str:
    """A copy of a store with one passage's rows damaged; returns that passage's id."""
    shutil.copytree(src, dst)
    store = PassageStore.open(dst)
    a, b = int(store.offsets[passage]), int(store.offsets[passage + 1])
    pid = store.ids[passage]
    if kind == "nan":
        vectors = np.memmap(dst / "vectors.bin", dtype=np.float16, mode="r+", shape=(int(store.offsets[-1]), store.dim))
        vectors[a:b] = np.nan
        vectors.flush()
    else:
        ids = np.memmap(dst / "centroid_ids.bin", dtype=np.uint16, mode="r+")
        ids[a:b] = 0xFFFF
        ids.flush()
    return pid


def _request(folder: DataFolder, with_pid: str, n: int = 10) -> tuple[str, list[str]]:
    qid = sorted(folder.queries)[1]
    ids = [p for p, _ in folder.run("bm25")[qid][:n] if p != with_pid][: n - 1]
    return folder.queries[qid], [with_pid, *ids]


def test_out_of_range_centroid_ids_are_refused_at_open_naming_the_passage(stores, tmp_path) -> None:
    pid = _damaged_copy(stores["residual"], tmp_path / "bad", 5, "ids")
    with pytest.raises(ArtifactError, match=re.escape(pid)) as info:
        PassageStore.open(tmp_path / "bad")
    assert "out of range" in str(info.value)


def test_a_damaged_store_found_while_serving_is_data_loss_and_turns_the_models_health(
    stores, folder, tmp_path, monkeypatch
) -> None:
    pid = _damaged_copy(stores["residual"], tmp_path / "bad", 5, "ids")
    monkeypatch.setattr(store_reader, "CHECK_IDS_AT_OPEN_BYTES", 0)  # as for a store too large to check at open
    cfg = student_config(stores, str(tmp_path / "bad"))
    server = launch(cfg)
    try:
        query, ids = _request(folder, pid)
        with RerankerClient(server.target) as client:
            assert len(client.rerank(query, ids[1:]).results) == len(ids) - 1  # undamaged passages still serve
            with pytest.raises(grpc.RpcError) as info:
                client.rerank(query, ids)
            assert info.value.code() == grpc.StatusCode.DATA_LOSS
            assert pid in info.value.details() and "damaged" in info.value.details()
            time.sleep(0.2)
            assert client.health("reranker.v1.Reranker/student") == "NOT_SERVING"
        assert metric(server.metrics(), "reranker_store_damaged", model="student") == 1
    finally:
        server.stop()


def test_nan_states_rank_last_flagged_and_never_reach_fusion(stores, folder, tmp_path) -> None:
    pid = _damaged_copy(stores["fp16"], tmp_path / "nan", 7, "nan")
    query, ids = _request(folder, pid)
    firsts = [float(len(ids) - i) for i in range(len(ids))]  # the damaged passage has the highest first-stage score
    with LocalEngine.of(str(stores["artifact"]), str(tmp_path / "nan"), runtime=CPU) as engine:
        out = engine.rerank(query, ids)
        assert out.results[-1].id == pid and out.results[-1].invalid
        assert all(np.isfinite(r.score) for r in out.results) and out.stats["invalid"] == 1
        assert not any(r.invalid for r in out.results[:-1])
        for rule in ("minmax", "zscore", "rrf"):
            fused = engine.rerank(query, ids, first_stage=firsts, fusion=FusionRule(rule, 0.5))
            assert fused.results[-1].id == pid and all(np.isfinite(r.score) for r in fused.results)
            assert len({round(r.score, 6) for r in fused.results[:-1]}) == len(ids) - 1  # nothing collapsed to one value
        top = engine.rerank(query, ids, top_k=3)
    assert pid not in [r.id for r in top.results]


def test_invalid_scores_are_flagged_and_counted_over_grpc(stores, folder, tmp_path) -> None:
    pid = _damaged_copy(stores["fp16"], tmp_path / "nan", 7, "nan")
    cfg = student_config(stores, str(tmp_path / "nan"))
    server = launch(cfg)
    try:
        query, ids = _request(folder, pid)
        with RerankerClient(server.target) as client:
            results = client.rerank(query, ids).results
        assert results[-1].id == pid and results[-1].invalid_score and not results[0].invalid_score
        assert metric(server.metrics(), "reranker_invalid_scores_total", model="student") == 1
    finally:
        server.stop()


def test_error_messages_quote_client_input_bounded(stores, folder) -> None:
    cfg = student_config(stores, str(stores["fp16"]), metrics_port=-1)
    server = launch(cfg)
    try:
        query, ids = _request(folder, sorted(folder.passages)[0])
        with RerankerClient(server.target) as client:
            for kwargs in ({"model": "m" * 20_000}, {}):
                candidates = ids if kwargs else [f"{i}" * 3_000 for i in range(10)]
                with pytest.raises(grpc.RpcError) as info:
                    client.rerank(query, candidates, **kwargs)
                assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
                assert len(info.value.details()) < 600
            with pytest.raises(grpc.RpcError) as info:
                client.rerank(query, ["x" * 15_000])
            assert info.value.code() == grpc.StatusCode.NOT_FOUND and "15,000 chars" in info.value.details()
    finally:
        server.stop()
    assert quoted("abc") == "'abc'" and some(["a"] * 10, shown=2).endswith("and 8 more")


def _connectivity_while(channel: grpc.Channel, seconds: float) -> list[grpc.ChannelConnectivity]:
    seen: list[grpc.ChannelConnectivity] = []
    channel.subscribe(seen.append, try_to_connect=True)
    time.sleep(seconds)
    channel.unsubscribe(seen.append)
    return seen


def test_clients_pinging_every_second_are_never_disconnected(stores, folder) -> None:
    cfg = student_config(stores, str(stores["fp16"]), metrics_port=-1)
    server = launch(cfg)
    engine = server.running.engine
    model = engine.models["student"]
    original = model.batcher._run_batch

    def slow(pairs):  # each batch takes 0.5 s: an in-flight request that outlives several pings
        time.sleep(0.5)
        return original(pairs)

    pinging = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    try:
        with grpc.insecure_channel(server.target, options=pinging) as channel:
            stub = pb_grpc.RerankerStub(channel)
            stub.ListModels(pb.ListModelsRequest(), timeout=10)
            idle = _connectivity_while(channel, 4.5)  # idle, pinging every second
            assert grpc.ChannelConnectivity.IDLE not in idle and grpc.ChannelConnectivity.TRANSIENT_FAILURE not in idle
            model.batcher._run_batch = slow
            query, ids = _request(folder, sorted(folder.passages)[0], n=60)
            answer = stub.Rerank(
                pb.RerankRequest(query=query, candidates=[pb.Candidate(id=i) for i in ids], model="student"), timeout=30
            )
            assert len(answer.results) == len(ids)
    finally:
        model.batcher._run_batch = original
        server.stop()


def test_bearer_scheme_case_reflection_and_metrics_exposure(stores, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    auth = Auth("s3cret")
    assert all(auth.allowed_header(v) for v in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret", " Bearer  s3cret"))
    assert not any(auth.allowed_header(v) for v in ("Basic s3cret", "Bearer wrong", "s3cret", "", None))
    base = student_config(stores, str(stores["fp16"]), token_file=str(token))
    server = launch(base.replace(metrics_auth=True))
    try:
        assert server.running._http.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.running.metrics_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=5)
        assert info.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert b"reranker_requests_total" in r.read()
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
            with pytest.raises(grpc.RpcError) as rpc:
                list(stub.ServerReflectionInfo(iter(ask), timeout=5))
            assert rpc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = list(stub.ServerReflectionInfo(iter(ask), timeout=5, metadata=[("authorization", "BEARER s3cret")]))
            assert "reranker.v1.Reranker" in {s.name for s in answer[0].list_services_response.service}
        with RerankerClient(server.target) as client:
            assert client.health() == "SERVING"  # probes need no token
    finally:
        server.stop()
    server = launch(base.replace(reflection=False, token_file=""))
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as rpc:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
            assert rpc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop()


def test_queue_depth_returns_to_zero_after_dropped_work(stores, folder) -> None:
    cfg = student_config(
        stores,
        str(stores["fp16"]),
        max_queue_ms=0,
        batching=BatcherConfig(max_batch_size=4, max_batches_per_run=1, maxsim_batch_pairs=4),
    )
    server = launch(cfg)
    model = server.running.engine.models["student"]
    original = model.batcher._run_batch

    def slow(pairs):
        time.sleep(0.2)
        return original(pairs)

    model.batcher._run_batch = slow
    try:
        query, ids = _request(folder, sorted(folder.passages)[0], n=80)
        with RerankerClient(server.target, timeout=0.5) as client, pytest.raises(grpc.RpcError) as info:
            client.rerank(query, ids)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.5)
        text = server.metrics()
        assert 'reranker_queue_depth{model="student"}' in text  # the gauge was set (to the queued pairs) ...
        assert metric(text, "reranker_queue_depth", model="student") == 0  # ... and is back at 0
    finally:
        model.batcher._run_batch = original
        server.stop()


def test_an_abandoned_requests_estimate_leaves_admission_at_once() -> None:
    admission = Admission(max_pending_requests=8, max_pending_encodes=400, max_queue_s=0.1)
    heavy = admission.admit(2.7, encodes=300, deadline=None)
    admission.done(heavy, answered=False, running_s=0.05)  # cancelled while its pre stage still runs
    assert admission.ahead_s == pytest.approx(0.05)
    probe = admission.admit(0.001, encodes=0, deadline=None)  # a cheap request right after is not refused
    admission.prepared(heavy)
    assert admission.ahead_s == pytest.approx(0.001)
    admission.prepared(probe)
    admission.done(probe, answered=True)
    assert admission.ahead_s == 0.0


def test_requests_abandoned_late_calibrate_the_estimate_upwards_only() -> None:
    """A request given up at its deadline took at least that long: it raises the calibration when its
    time already exceeds the estimate (otherwise only the fast answers would calibrate it)."""
    admission = Admission(max_pending_requests=8, max_pending_encodes=400, max_queue_s=0.1)
    late = admission.admit(0.02, encodes=0, deadline=None)
    late.admitted -= 0.2  # it has been running ten times its estimate
    admission.prepared(late)
    admission.done(late, answered=False, late=True)
    assert admission.scale == pytest.approx(0.8 + 0.2 * 2)  # ten times, taken as at most twice the scale
    quick = admission.admit(0.02, encodes=0, deadline=None)
    admission.prepared(quick)
    admission.done(quick, answered=False, late=True)  # abandoned at once: says nothing of the true time
    assert admission.scale == pytest.approx(1.2) and admission.outstanding == 0 and admission.ahead_s == 0.0


def test_an_idle_admission_has_exactly_nothing_ahead() -> None:
    """Float sums leave residues (0.1 + 0.2 - 0.1 - 0.2 != 0): with no request outstanding the work
    ahead is exactly 0, so an idle engine admits whatever its scale says (it then recalibrates)."""
    admission = Admission(max_pending_requests=8, max_pending_encodes=400, max_queue_s=1.0)
    stakes = [admission.admit(s, encodes=0, deadline=None) for s in (0.1, 0.2, 0.7)]
    for stake in stakes:
        admission.prepared(stake)
        admission.done(stake, answered=False)
    assert admission.ahead_s == 0.0 and admission.outstanding == 0
    admission.scale = 20.0
    admission.admit(0.5, encodes=0, deadline=time.monotonic() + 0.2)  # 10 s scaled, but nothing is ahead


def test_sighup_is_logged_and_ignored_and_in_flight_work_finishes(tiny_exports, tmp_path) -> None:
    config = tmp_path / "s.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\nmetrics_port = -1\nhttp_port = 0\n[runtime]\nprovider = "cpu"\n'
        f'intra_op_threads = 1\n[[models]]\nname = "teacher"\nartifact = "{tiny_exports["bert_cat"][1]}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reranker.cli", "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stderr is not None
    port = None
    for line in proc.stderr:
        found = re.search(r"gRPC on \S+:(\d+)", line)
        port = int(found.group(1)) if found else port
        if "serving " in line:
            break
    try:
        folder = DataFolder.open(DL19_MINI)
        qid = sorted(folder.queries)[0]
        texts = [(p, folder.passages[p]) for p, _ in folder.run("bm25")[qid][:20]]
        with RerankerClient(f"127.0.0.1:{port}", timeout=30) as client:
            future = client.stub.Rerank.future(
                pb.RerankRequest(query=folder.queries[qid], candidates=[pb.Candidate(id=i, text=t) for i, t in texts]), timeout=30
            )
            proc.send_signal(signal.SIGHUP)
            assert len(future.result().results) == 20
            time.sleep(0.3)
            assert proc.poll() is None
            assert len(client.rerank(folder.queries[qid], texts).results) == 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = proc.stderr.read()
        assert "received SIGHUP: ignored" in log and "received SIGTERM: draining" in log
    finally:
        if proc.poll() is None:
            proc.kill()


def test_store_verify_names_damaged_files_and_passages(stores, tmp_path, capsys) -> None:
    from reranker.cli import main

    assert main(["store", "verify", str(stores["fp16"])]) == 0
    assert "ok (" in capsys.readouterr().out
    pid = _damaged_copy(stores["fp16"], tmp_path / "nan", 3, "nan")
    assert main(["store", "verify", str(tmp_path / "nan")]) == 2  # the vectors' sha256 no longer matches
    assert "vectors.bin" in capsys.readouterr().err
    from reranker.manifest import sha256_file

    manifest = json.loads((tmp_path / "nan" / "manifest.json").read_text())
    manifest["files"]["vectors.bin"]["sha256"] = sha256_file(tmp_path / "nan" / "vectors.bin")  # damage before hashing
    (tmp_path / "nan" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["store", "verify", str(tmp_path / "nan")]) == 2
    assert pid in capsys.readouterr().err
    _damaged_copy(stores["residual"], tmp_path / "ids", 2, "ids")
    assert main(["store", "verify", str(tmp_path / "ids")]) == 2
    assert "centroid_ids.bin" in capsys.readouterr().err


def test_serve_finds_the_default_passages_from_any_directory_or_names_the_option(tmp_path) -> None:
    from reranker.errors import ConfigError
    from reranker.provision import DEFAULT_DATA, default_data

    assert default_data(tmp_path) == ROOT / DEFAULT_DATA  # beside the package of this (editable) checkout
    (tmp_path / DEFAULT_DATA).mkdir(parents=True)
    (tmp_path / DEFAULT_DATA / "passages.tsv.gz").write_bytes(b"")
    assert default_data(tmp_path) == tmp_path / DEFAULT_DATA
    import reranker.provision as provision

    fake = tmp_path / "site" / "reranker" / "provision.py"
    original = provision.__file__
    try:
        provision.__file__ = str(fake)
        with pytest.raises(ConfigError, match="--data"):
            default_data(tmp_path / "elsewhere")
    finally:
        provision.__file__ = original
