"""The HTTP /rerank API on a real server on loopback: the Cohere v1 / v2, Jina and TEI shapes give the
gRPC answer for the same request; errors get their HTTP status in one place; hostile HTTP."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")

from reranker.client import RerankerClient
from reranker.data import DataFolder

from .conftest import DL19_MINI
from .test_server import Live, launch, metric


@pytest.fixture(scope="module")
def folder() -> DataFolder:
    return DataFolder.open(DL19_MINI)


@pytest.fixture(scope="module")
def http(setup) -> Iterator[Live]:  # noqa: F811 - the fixture imported from test_server
    server = launch(setup["cfg"])
    yield server
    server.stop()


from .test_server import setup  # noqa: E402,F401 - the module fixture of the tiny models and store


def url(live: Live, path: str) -> str:
    return f"http://127.0.0.1:{live.running.http_port}{path}"


def call(
    live: Live,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url(live, path), data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None, dict(r.headers)
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text.decode(errors="replace")
        return exc.code, parsed, dict(exc.headers)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _request(folder: DataFolder, n: int = 8) -> tuple[str, list[str]]:
    qid = sorted(folder.queries)[1]
    return folder.queries[qid], [p for p, _ in folder.run("bm25")[qid][:n]]


def test_cohere_and_jina_shapes_give_the_grpc_answer(http, folder) -> None:
    query, ids = _request(folder)
    texts = [folder.passages[p] for p in ids]
    with RerankerClient(http.target) as client:
        expected = client.rerank(query, [("", t) for t in texts], model="student", top_k=5).results
    for version in ("1", "2"):
        status, body, _ = call(
            http,
            f"/v{version}/rerank",
            {"model": "student", "query": query, "documents": texts, "top_n": 5, "return_documents": True},
        )
        assert status == 200, body
        assert [r["index"] for r in body["results"]] == [r.index for r in expected]
        for got, want in zip(body["results"], expected, strict=True):
            assert math.isclose(got["relevance_score"], want.score, rel_tol=1e-5, abs_tol=1e-5)
            assert got["document"]["text"] == texts[got["index"]]
        assert body["meta"]["api_version"]["version"] == version and body["meta"]["billed_units"]["search_units"] == 1
        assert body["id"] and body["model"] == "student" and body["timing"]["total_ms"] > 0
    status, body, _ = call(http, "/v1/rerank", {"model": "student", "query": query, "documents": [{"text": t} for t in texts]})
    assert status == 200 and "document" not in body["results"][0] and len(body["results"]) == len(texts)


def test_documents_by_store_id_fusion_and_extension_fields(http, folder) -> None:
    query, ids = _request(folder)
    firsts = [float(len(ids) - i) for i in range(len(ids))]
    with RerankerClient(http.target) as client:
        expected = client.rerank(
            query, [(p, "", f) for p, f in zip(ids, firsts, strict=True)], model="student", fusion="rrf", fusion_weight=0.7
        ).results
    docs = [{"id": p, "first_stage_score": f} for p, f in zip(ids, firsts, strict=True)]
    status, body, _ = call(
        http, "/v2/rerank", {"model": "student", "query": query, "documents": docs, "fusion": {"rule": "rrf", "weight": 0.7}}
    )
    assert status == 200, body
    assert [r["id"] for r in body["results"]] == [r.id for r in expected]
    assert all(r["source"] == "store" for r in body["results"])
    assert [round(r["relevance_score"], 5) for r in body["results"]] == [round(r.score, 5) for r in expected]


def test_long_documents_in_windows_over_http(http, folder) -> None:
    """The Cohere shape's ``aggregate`` extension, each result's ``windows``, the model card's limits."""
    query, ids = _request(folder, 3)
    long_text = " ".join(folder.passages[p] for p in ids)
    docs = [long_text, "fleas"]
    with RerankerClient(http.target) as client:
        want = {r.index: r for r in client.rerank(query, [("", d) for d in docs], model="teacher", aggregate="first-max").results}
    status, body, _ = call(http, "/v2/rerank", {"model": "teacher", "query": query, "documents": docs, "aggregate": "first-max"})
    assert status == 200, body
    for r in body["results"]:
        assert r["windows"] == max(1, want[r["index"]].windows) and r["truncated"] is False
        assert math.isclose(r["model_score"], want[r["index"]].model_score, rel_tol=1e-5, abs_tol=1e-5)
    assert body["results"][0]["windows"] > 2 or body["results"][1]["windows"] > 2
    status, cards, _ = call(http, "/v1/models", method="GET")
    teacher = {c["id"]: c for c in cards["data"]}["teacher"]
    assert (teacher["window_tokens"], teacher["window_stride"], teacher["aggregate"]) == (38, 19, "max")


def test_a_cascade_over_http(http, folder) -> None:
    query, ids = _request(folder, 3)
    docs = [{"id": p, "text": folder.passages[p], "first_stage_score": float(3 - i)} for i, p in enumerate(ids)]
    status, body, _ = call(http, "/v1/rerank", {"model": "auto", "query": query, "documents": docs})
    assert status == 200, body
    assert body["model"] == "auto" and body["scored_by"] == "teacher" and "teacher" in body["reason"]
    status, body, _ = call(http, "/v1/rerank", {"model": "auto", "query": query, "documents": docs, "tier": "first-stage"})
    assert status == 200 and body["scored_by"] == "first-stage" and [r["id"] for r in body["results"]] == ids
    status, body, _ = call(http, "/v1/rerank", {"model": "auto", "query": query, "documents": docs, "tier": "nope"})
    assert status == 400 and "is not one of cascade auto's tiers" in body["message"]
    status, cards, _ = call(http, "/v1/models", method="GET")
    assert cards["cascades"] == [
        {"name": "auto", "tiers": ["teacher", "student", "first-stage"], "reserve_ms": 20.0, "reserve_share": 0.05}
    ]


def test_tei_shape(http, folder) -> None:
    query, ids = _request(folder, 4)
    texts = [folder.passages[p] for p in ids]
    status, raw, _ = call(http, "/rerank", {"query": query, "texts": texts, "raw_scores": True, "model": "student"})
    assert status == 200, raw
    status, squashed, _ = call(http, "/rerank", {"query": query, "texts": texts, "return_text": True, "model": "student"})
    assert status == 200
    assert [r["index"] for r in raw] == [r["index"] for r in squashed]
    for a, b in zip(raw, squashed, strict=True):
        assert math.isclose(b["score"], 1 / (1 + math.exp(-a["score"])), rel_tol=1e-6)
        assert b["text"] == texts[b["index"]] and "text" not in a


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/rerank", {"query": "flea", "documents": ["x"], "model": "nope"}, 404, "unknown model"),
        ("/v1/rerank", {"query": " ", "documents": ["x"], "model": "student"}, 400, "query is empty"),
        ("/v1/rerank", {"query": "flea", "documents": [], "model": "student"}, 400, "no candidates"),
        ("/v1/rerank", {"query": "flea", "documents": [{"id": "no-such-id"}], "model": "student"}, 404, "no-such-id"),
        ("/v1/rerank", {"query": "flea", "documents": [{}], "model": "student"}, 400, "neither"),
        ("/v1/rerank", {"query": "flea", "documents": "x"}, 422, "documents"),
        ("/v1/rerank", {"query": 3, "documents": ["x"]}, 422, "query"),
        ("/v1/rerank", {"documents": ["x"]}, 422, "query"),
        ("/v1/rerank", {"query": "flea", "documents": ["x"], "top_n": -1}, 422, "top_n"),
        ("/v2/rerank", {"query": "flea", "documents": ["x"] * 6, "model": "teacher"}, 400, "at most 5"),
        (
            "/v2/rerank",
            {
                "query": "flea",
                "documents": [{"id": "a", "first_stage_score": 1}],
                "model": "student",
                "fusion": {"rule": "bogus"},
            },
            400,
            "fusion rule",
        ),
        ("/rerank", {"query": "flea", "texts": ["x " * 3000], "truncate": False, "model": "student"}, 400, "truncate"),
        ("/v1/rerank", {"query": "flea", "documents": ["x"], "aggregate": "sum"}, 400, "not one of max, first-max, first"),
    ],
)
def test_bad_input_gets_a_clear_status_never_500(http, path, body, status, words) -> None:
    got, answer, _ = call(http, path, body)
    assert got == status, answer
    assert words in answer["message"] and answer["code"]


def test_transport_errors_health_models_and_metrics(http) -> None:
    got, answer, _ = call(http, "/v1/rerank", raw=b'{"query": "flea", "documents": [')
    assert got == 422 and "schema" in answer["message"]
    with socket.create_connection(("127.0.0.1", http.running.http_port), timeout=10) as sock:  # refused unread
        sock.sendall(
            b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 17000000\r\n\r\n" + b"x" * 65536
        )
        reply = read_all(sock)
    assert b" 413 " in reply.split(b"\r\n", 1)[0] and b"max_message_bytes" in reply
    chunked = b'{"query": "flea", "documents": ["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    with socket.create_connection(("127.0.0.1", http.running.http_port), timeout=10) as sock:  # no Content-Length
        sock.sendall(
            b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for start in range(0, len(chunked), 1 << 20):
                part = chunked[start : start + (1 << 20)]
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        except OSError:
            pass  # the server answered and closed before the rest
        reply = sock.recv(4096)
    assert b" 413 " in reply.split(b"\r\n", 1)[0]
    got, answer, _ = call(http, "/v1/rerank", {"query": "flea", "documents": ["x"]}, headers={"X-Request-Timeout": "soon"})
    assert got == 400 and "x-request-timeout" in answer["message"]
    got, answer, _ = call(
        http,
        "/v2/rerank",
        {"query": "flea", "documents": ["fleas " * 40] * 50, "model": "student"},
        headers={"X-Request-Timeout": "0.000001"},
    )
    assert got in (504, 429), answer
    assert call(http, "/health", method="GET")[:2] == (
        200,
        {
            "status": "SERVING",
            "stores": {"student": {"status": "ready", "progress": 1.0}, "teacher": {"status": "none", "progress": 0.0}},
        },
    )
    got, models, _ = call(http, "/v1/models", method="GET")
    assert got == 200 and {m["id"] for m in models["data"]} == {"student", "teacher"}
    assert call(http, "/nowhere", method="GET")[0] == 404
    assert call(http, "/v1/rerank", method="GET")[0] == 405
    assert call(http, "/openapi.json", method="GET")[0] == 200
    assert call(http, "/v1/rerank", {"query": "flea", "documents": ["fleas live a year"], "model": "student"})[0] == 200
    text = http.metrics()
    assert metric(text, "reranker_requests_total", model="student", code="OK", transport="http") >= 1
    assert metric(text, "reranker_requests_total", code="NOT_FOUND", transport="http") >= 1


def test_bearer_token_over_http(setup, tmp_path) -> None:  # noqa: F811
    (tmp_path / "token").write_text("s3cret\n")
    server = launch(setup["cfg"].replace(token_file=str(tmp_path / "token")))
    try:
        body = {"query": "flea", "documents": ["fleas live a year"], "model": "student"}
        got, _, headers = call(server, "/v1/rerank", body)
        assert got == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
        assert call(server, "/v1/rerank", body, headers={"Authorization": "bearer s3cret"})[0] == 200
        assert call(server, "/health", method="GET")[0] == 200  # probes need no token
    finally:
        server.stop()


def test_slow_body_and_disconnects_leave_the_server_serving(http, folder) -> None:
    state = http.running.http_server.state
    state.body_timeout_s = 1.0  # http_body_timeout_s, shortened for the test
    with socket.create_connection(("127.0.0.1", http.running.http_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(30)
        started = time.monotonic()
        reply = sock.recv(1024)
        assert b" 408 " in reply.split(b"\r\n", 1)[0] and time.monotonic() - started < 10
    state.body_timeout_s = 10.0
    query, ids = _request(folder, 40)
    body = json.dumps({"query": query, "documents": [folder.passages[p] for p in ids], "model": "student"}).encode()
    for _ in range(5):  # clients that send a request and go away at once
        with socket.create_connection(("127.0.0.1", http.running.http_port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
    assert call(http, "/health", method="GET")[0] == 200
    until = time.monotonic() + 20  # the abandoned work is dropped and leaves admission: a request is answered again
    while True:
        got, answer, headers = call(http, "/v1/rerank", {"query": query, "documents": ["fleas live"], "model": "student"})
        if got != 429 or time.monotonic() > until:
            break
        assert headers.get("retry-after", headers.get("Retry-After")) == "1"
        time.sleep(0.2)
    assert got == 200 and answer["results"][0]["index"] == 0


def test_tls_over_http_with_the_grpc_certificate(setup, tmp_path) -> None:  # noqa: F811
    import ssl

    from .test_server import _self_signed

    key, cert = _self_signed(tmp_path, "server")
    server = launch(setup["cfg"].replace(tls_cert=str(cert), tls_key=str(key)))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        body = json.dumps({"query": "flea", "documents": ["fleas live a year"], "model": "student"}).encode()
        request = urllib.request.Request(
            f"https://127.0.0.1:{server.running.http_port}/v2/rerank", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            assert r.status == 200 and json.loads(r.read())["results"][0]["index"] == 0
        import http.client

        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):  # no plaintext
            urllib.request.urlopen(f"http://127.0.0.1:{server.running.http_port}/health", timeout=5)
    finally:
        server.stop()
