"""Property-based bad input over the real gRPC API: every request gets a well-formed answer or a
precise status code (never INTERNAL or UNKNOWN), and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

pytest.importorskip("onnxruntime")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from reranker.artifact import Artifact  # noqa: E402
from reranker.client import RerankerClient  # noqa: E402
from reranker.data import DataFolder  # noqa: E402
from reranker.engine import BatcherConfig, Limits, RuntimeConfig, passage_encoder  # noqa: E402
from reranker.server.config import ModelSpec, ServerConfig  # noqa: E402
from reranker.store.build import build_store  # noqa: E402
from reranker.v1 import reranker_pb2 as pb  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402
from .test_server import launch  # noqa: E402

PRECISE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)
MAX_CANDIDATES = 50


@pytest.fixture(scope="module")
def server(tiny_exports, tmp_path_factory):
    folder = DataFolder.open(DL19_MINI)
    root = tmp_path_factory.mktemp("fuzz")
    colbert = tiny_exports["colbert"][1]
    art = Artifact.open(colbert)
    build_store(art, folder.passages, root / "store", encode=passage_encoder(art, CPU), progress=False)
    limits = Limits(max_candidates=MAX_CANDIDATES, max_query_chars=500, max_passage_chars=3000)
    models = (
        ModelSpec("student", str(colbert), str(root / "store"), limits=limits),
        ModelSpec("tk", str(tiny_exports["tk"][1]), limits=limits),
        ModelSpec("teacher", str(tiny_exports["bert_cat"][1]), limits=limits),
    )
    cfg = ServerConfig(
        models=models,
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        http_port=0,
        runtime=CPU,
        max_message_bytes=256 * 1024,
        batching=BatcherConfig(max_wait_s=0.001),
    )
    live = launch(cfg)
    client = RerankerClient(live.target, timeout=30)
    yield client, sorted(folder.passages)
    client.close()
    live.stop()


odd_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
weird = st.one_of(
    odd_text,
    st.sampled_from(["", " ", "\x00", "\u200b\u200b", "🦄" * 40, "a" * 600, "\t\n\r", "\ufeffquery", "ﬁ ﬂ ǅ", "x" * 4000]),
)


def check(client: RerankerClient, query: str, candidates: list, model: str, top_k: int) -> None:
    try:
        response = client.rerank(query, candidates, model=model, top_k=top_k)
    except grpc.RpcError as exc:
        assert exc.code() in PRECISE, (exc.code(), exc.details())
        assert exc.details()
    else:
        n = len(candidates)
        assert len(response.results) == (min(top_k, n) if top_k else n)
        scores = [r.score for r in response.results]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= r.index < n for r in response.results)
        assert len({r.index for r in response.results}) == len(response.results)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_requests_get_answers_or_precise_codes(server, data) -> None:
    client, pids = server
    model = data.draw(st.sampled_from(["", "student", "tk", "teacher", "nope", "🦄"]))
    query = data.draw(weird)
    n = data.draw(st.integers(min_value=0, max_value=MAX_CANDIDATES + 5))
    candidates = []
    for _ in range(n):
        kind = data.draw(st.sampled_from(["stored", "text", "missing", "duplicate"]))
        if kind == "stored":
            candidates.append(data.draw(st.sampled_from(pids)))
        elif kind == "text":
            candidates.append((data.draw(odd_text), data.draw(weird)))
        elif kind == "missing":
            candidates.append(data.draw(st.text(min_size=1, max_size=8)))
        elif candidates:
            candidates.append(candidates[0])
    top_k = data.draw(st.integers(min_value=0, max_value=2 * MAX_CANDIDATES))
    check(client, query, candidates, model, top_k)
    assert client.health() == "SERVING"


def test_invalid_utf8_and_oversized_messages(server) -> None:
    client, pids = server
    raw = client.channel.unary_unary("/reranker.v1.Reranker/Rerank")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\x02\xff\xfe" + b"\x12\x03\x0a\x01a", timeout=10)  # query = invalid UTF-8 bytes
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\x05hello\x12", timeout=10)  # truncated message
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = pb.RerankRequest(query="q", candidates=[pb.Candidate(id="x", text="y" * 300_000)]).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        raw(huge, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    many = [(f"id{i}", "text") for i in range(5000)]
    with pytest.raises(grpc.RpcError) as info:
        client.rerank("q", many)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"at most {MAX_CANDIDATES}" in info.value.details()
    assert client.health() == "SERVING"
    assert len(client.rerank("what is a flea", pids[:3]).results) == 3
