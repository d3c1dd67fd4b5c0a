"""Issue 14: hostile text (over-long passages, typed special tokens), stored ids sent with another
text, honest metrics, and health that says SERVING only once a request would succeed."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact
from reranker.client import RerankerClient
from reranker.config import DEFAULT_MODEL_DIR
from reranker.server.app import start
from reranker.tokenization import Preprocessor, Tokenizer
from reranker.v1 import reranker_pb2 as pb

from . import test_server
from .test_server import launch, metric, request_of

folder, setup, live = test_server.folder, test_server.setup, test_server.live  # the same module fixtures

SPECIALS = ("[MASK]", "[SEP]", "[PAD]", "[CLS]")


# --- case 3: one long passage never fails its neighbours -------------------------------------------------------


def test_a_long_passage_is_cut_and_flagged_not_refused(live, folder) -> None:
    query, pids = request_of(folder, 9)
    long_text = "flea " * 4001  # 20,005 characters: over the default max_passage_chars of 20,000
    with RerankerClient(live.target) as client:
        out = client.rerank(query, [*pids, ("long-one", long_text)])
        teacher = client.rerank(query, [("a", folder.passages[pids[0]]), ("b", long_text)], model="teacher")
    assert len(out.results) == 10 and len(teacher.results) == 2
    flagged = {r.index: r.truncated for r in out.results}
    assert flagged[9] is True
    assert {r.index: r.truncated for r in teacher.results}[1] is True


def test_list_models_lists_every_limit_that_can_refuse(live, setup) -> None:
    cfg = setup["cfg"]
    with RerankerClient(live.target) as client:
        response = client.stub.ListModels(pb.ListModelsRequest(), timeout=10)
    models = {m.name: m for m in response.models}
    spec = {m.name: m for m in cfg.models}
    for name, m in models.items():
        assert m.max_query_chars == spec[name].limits.max_query_chars
        assert m.max_passage_chars == spec[name].limits.max_passage_chars
        assert m.max_candidates == spec[name].limits.max_candidates
        assert m.max_queued_pairs == cfg.batching.max_queue
        assert m.max_queue_ms == round(cfg.max_queue_ms)
    assert response.max_message_bytes == cfg.max_message_bytes
    assert response.max_pending_requests == cfg.max_pending_requests
    assert response.max_pending_encodes == cfg.max_pending_encodes


# --- case 4: typed special tokens are text ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert_cat", "bert_dot", "colbert", "prett", "tk"])
def test_typed_special_tokens_are_text_for_every_architecture(tiny_exports, arch) -> None:
    """The shipped tokenizer registers [MASK], [SEP], ... as special tokens: typed by a user they must
    be word pieces like any text (any case), never the control tokens the models are built around."""
    tokenizer = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    prep = Preprocessor(tokenizer, Artifact.open(tiny_exports[arch][1]).config)
    control = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id}
    for special in SPECIALS:
        for encode in (prep.queries, prep.passages):
            upper = encode([f"{special} lifespan of a flea"])
            lower = encode([f"{special.lower()} lifespan of a flea"])
            np.testing.assert_array_equal(upper.input_ids, lower.input_ids)
            first = 1 if upper.input_ids[0, 0] == tokenizer.cls_id else 0  # TK has no [CLS] ... [SEP]
            pieces = upper.input_ids[0, first : first + int(upper.lengths[0])].tolist()
            assert not control & set(pieces), (special, pieces)
    only_pad = prep.queries(["[PAD]"])
    assert int(only_pad.lengths[0]) == 3  # "[", "pad", "]": the text it is


def test_a_query_of_a_typed_special_token_is_its_text(live, folder) -> None:
    _, pids = request_of(folder, 3)
    with RerankerClient(live.target) as client:
        for model in ("student", "teacher"):
            cands = pids if model == "student" else [(p, folder.passages[p]) for p in pids]
            upper = {r.index: r.score for r in client.rerank("[PAD]", cands, model=model).results}
            lower = {r.index: r.score for r in client.rerank("[pad]", cands, model=model).results}
            assert upper == pytest.approx(lower, abs=1e-5)


# --- case 5: a stored id sent with another text ----------------------------------------------------------------


def test_each_result_says_where_its_state_came_from(live, folder) -> None:
    query, pids = request_of(folder, 3)
    with RerankerClient(live.target) as client:
        plain = client.rerank(query, pids[:1])
        mixed = client.rerank(query, [(pids[0], "a completely different text"), ("not-stored", "some text")])
        teacher = client.rerank(query, [(pids[0], folder.passages[pids[0]])], model="teacher")
    source = {r.index: r.source for r in mixed.results}
    assert source == {0: pb.Result.SOURCE_STORE, 1: pb.Result.SOURCE_TEXT}
    assert plain.results[0].source == pb.Result.SOURCE_STORE
    stored = next(r.score for r in mixed.results if r.index == 0)
    assert stored == pytest.approx(plain.results[0].score, abs=1e-6)  # the stored state was scored, as documented
    assert teacher.results[0].source == pb.Result.SOURCE_TEXT


# --- case 2: metrics say what the client saw -------------------------------------------------------------------


def _slow(model, seconds: float) -> None:
    """Make a served model's core stage take ``seconds`` per batch (in-process server)."""
    real = model.batcher._run_batch

    def slow(pairs):
        time.sleep(seconds)
        return real(pairs)

    model.batcher._run_batch = slow


def test_codes_are_what_the_client_received_and_every_drop_is_counted(setup, folder) -> None:
    server = launch(setup["cfg"].replace(max_queue_ms=0))
    query, pids = request_of(folder, 8)
    try:
        _slow(server.running.engine.models["student"], 0.8)
        with RerankerClient(server.target, timeout=30) as client, ThreadPoolExecutor(1) as pool:
            blocker = pool.submit(client.rerank, query, pids)  # holds the batch worker for 0.8 s
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as info:
                client.rerank(query, pids[:3], timeout=0.3)  # expires in the queue
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert len(blocker.result().results) == 8
            time.sleep(0.2)
        text = server.metrics()
    finally:
        server.stop()
    assert metric(text, "reranker_requests_total", model="student", code="DEADLINE_EXCEEDED") == 1
    assert metric(text, "reranker_requests_total", model="student", code="CANCELLED") == 0
    assert metric(text, "reranker_dropped_pairs_total", model="student") == 3
    assert (
        metric(
            text,
            "grpc_server_handled_total",
            grpc_type="unary",
            grpc_service="reranker.v1.Reranker",
            grpc_method="Rerank",
            grpc_code="DEADLINE_EXCEEDED",
        )
        == 1
    )
    assert metric(text, "grpc_server_handled_total", grpc_code="CANCELLED") == 0


def test_standard_grpc_metrics_have_the_ecosystem_labels_and_cover_health(live) -> None:
    before = live.metrics()
    with RerankerClient(live.target) as client:
        assert client.health() == "SERVING"
        client.list_models()
    after = live.metrics()
    health = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    for name in (
        "grpc_server_started_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_count",
    ):
        assert metric(after, name, **health) - metric(before, name, **health) == 1, name
    assert (
        metric(after, "grpc_server_handled_total", grpc_code="OK", **health)
        - metric(before, "grpc_server_handled_total", grpc_code="OK", **health)
        == 1
    )
    assert (
        metric(
            after,
            "grpc_server_handled_total",
            grpc_type="unary",
            grpc_service="reranker.v1.Reranker",
            grpc_method="ListModels",
            grpc_code="OK",
        )
        >= 1
    )


# --- case 6: SERVING only once a Rerank would succeed ----------------------------------------------------------


def test_health_never_says_serving_for_a_model_that_cannot_answer(setup) -> None:
    """On every start path (an engine given, warm-up configured off), readiness is a request that
    succeeded: a model that fails its first request never makes health SERVING."""
    from reranker.engine import Engine
    from reranker.server.metrics import Metrics

    cfg = setup["cfg"].replace(warmup=False, metrics_port=-1, http_port=0)
    metrics = Metrics()
    engine = Engine.from_config(cfg.engine, metrics)

    def broken(*arrays):
        raise RuntimeError("this model cannot answer")

    engine.models["teacher"].prepare.scorer.score = broken
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    starting = asyncio.run_coroutine_threadsafe(start(cfg, metrics=metrics, engine=engine), loop)
    with pytest.raises(RuntimeError, match="cannot answer"):
        running = starting.result(timeout=60)
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(timeout=30)


def test_from_start_up_a_serving_health_means_rerank_succeeds(setup, folder, monkeypatch) -> None:
    import socket

    import reranker.server.app as app

    real = app.load_engine
    monkeypatch.setattr(app, "load_engine", lambda cfg, metrics: (time.sleep(0.5), real(cfg, metrics))[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, pids = request_of(folder, 1)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    starting = asyncio.run_coroutine_threadsafe(start(setup["cfg"].replace(port=port)), loop)
    seen: list[tuple[str, str]] = []
    with RerankerClient(f"127.0.0.1:{port}", timeout=2) as client:
        for _ in range(300):
            try:
                status = client.health()
            except grpc.RpcError as exc:
                status = exc.code().name
            try:
                client.rerank("what is a flea", pids)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            seen.append((status, code))
            if starting.done() and len(seen) > 5 and status == "SERVING":
                break
            time.sleep(0.02)
    running = starting.result(timeout=60)
    asyncio.run_coroutine_threadsafe(running.stop(), loop).result(timeout=30)
    serving = [code for status, code in seen if status == "SERVING"]
    assert serving and set(serving) == {"OK"}, seen
