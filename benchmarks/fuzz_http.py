"""Hostile HTTP for ``benchmarks.fuzz --transport http``: generated requests to the /rerank API on
loopback, each answered with a clear status (never 500, never a dropped connection for a request
the server read), with the server still SERVING at the end.

Kinds: valid Cohere / TEI bodies (texts and store ids), odd Unicode, sizes over every limit,
unknown models and long names, malformed JSON, wrong types, bodies over the limit (by
Content-Length and chunked), unknown paths and methods (HEAD, OPTIONS, PUT), huge headers, bad and
tiny ``X-Request-Timeout``, clients that disconnect mid-request, and keep-alive floods (many
requests on one connection).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
from collections import Counter
from typing import Any

KINDS = (
    "valid",
    "tei",
    "ids",
    "unicode",
    "sizes",
    "model",
    "malformed",
    "types",
    "big",
    "path",
    "method",
    "headers",
    "timeout",
    "disconnect",
    "keepalive",
)
BAD = {500, 502, "reset", "no-answer"}
"""Outcomes that fail the run (a status, or what went wrong with the connection)."""


def body_of(
    rng: random.Random, kind: str, pids: list[str], passages: list[str], queries: list[str], weird: list[str]
) -> tuple[str, bytes]:
    """(path, body) of one generated request of ``kind``."""
    query = rng.choice(queries)
    n = rng.choice([1, 3, 10, 30]) if kind != "sizes" else rng.choice([0, 1, 100, 101, 150])
    if kind == "tei":
        return "/rerank", json.dumps(
            {
                "query": query,
                "texts": [rng.choice(passages) for _ in range(n)],
                "raw_scores": rng.random() < 0.5,
                "return_text": rng.random() < 0.5,
                "truncate": rng.random() < 0.8,
            }
        ).encode()
    docs: list[Any] = [rng.choice(passages) for _ in range(n)]
    if kind == "ids":
        docs = [{"id": rng.choice([*pids, "missing", "", "x" * 3000])} for _ in range(n)]
    elif kind == "unicode":
        query = rng.choice([query, *weird])
        docs = [rng.choice(weird) or "x" for _ in range(n)]
    body: dict[str, Any] = {"query": query, "documents": docs, "top_n": rng.choice([None, 0, 1, 5, 10**6])}
    if kind == "model":
        body["model"] = rng.choice(["nope", "🦄", "m" * 20_000, ""])
    if kind == "types":
        body[rng.choice(["query", "documents", "top_n", "return_documents"])] = rng.choice([3, [1, 2], {"a": 1}, None, -1])
    raw = json.dumps(body).encode()
    if kind == "malformed":
        raw = raw[: rng.randrange(max(len(raw), 1))] + rng.choice([b"", b"}", b"\xff\xfe", b"[[["])
    return rng.choice(["/v1/rerank", "/v2/rerank"]), raw


def one(rng: random.Random, kind: str, host: str, port: int, args: tuple[Any, ...]) -> str | int:
    """Send one request of ``kind``; its status, or what happened to the connection."""
    path, body = body_of(rng, kind, *args)
    headers = {"Content-Type": "application/json"}
    method = "POST"
    if kind == "big":
        body = b'{"query": "q", "documents": ["' + b"x" * (5 * 1024 * 1024) + b'"]}'
    elif kind == "path":
        path = rng.choice(["/", "/v3/rerank", "/rerank/x", "/%00", "/v1/models/../rerank", "/" + "a" * 5000])
    elif kind == "method":
        method = rng.choice(["HEAD", "OPTIONS", "PUT", "DELETE", "GET"])
    elif kind == "headers":
        headers["X-Junk"] = "j" * rng.choice([100, 8_000, 70_000])
    elif kind == "timeout":
        headers["X-Request-Timeout"] = rng.choice(["0.001", "0", "-1", "soon", "nan", "0.05", "inf"])
    if kind == "disconnect":
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: rng.randrange(len(body) + 1)]
            )
        return "disconnected"
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        for _ in range(rng.choice([20, 50]) if kind == "keepalive" else 1):
            conn.request(method, path, body=body if method not in ("GET", "HEAD") else None, headers=headers)
            response = conn.getresponse()
            response.read()
        return response.status
    except (ConnectionResetError, BrokenPipeError):
        return "reset" if kind not in ("big", "headers") else "closed"  # refused unread: the server may close
    except (http.client.RemoteDisconnected, TimeoutError, OSError):
        return "no-answer" if kind not in ("big", "headers") else "closed"
    finally:
        conn.close()


def summarise(outcomes: Counter[tuple[str, str | int]]) -> tuple[dict[str, int], dict[str, dict[str, int]], int]:
    """Codes overall, codes by kind, and the count of failing outcomes."""
    codes: Counter[str] = Counter()
    for (_, code), n in outcomes.items():
        codes[str(code)] += n
    by_kind = {k: {str(c): n for (kk, c), n in sorted(outcomes.items(), key=str) if kk == k} for k in KINDS}
    failed = sum(n for (_, code), n in outcomes.items() if code in BAD)
    return dict(codes), by_kind, failed
