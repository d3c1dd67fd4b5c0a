"""The HTTP transport: the ``/rerank`` shapes the ecosystem's clients speak (Cohere v1 / v2, Jina,
Text Embeddings Inference), on FastAPI, calling the same :meth:`Engine.rerank` as gRPC: the same
batching, limits, deadlines, fusion, truncation and store lookups. It converts bodies to
:class:`RerankInput` and answers back; errors map to HTTP statuses in one place (:data:`STATUS_OF`).

Bodies are read whole by an ASGI guard before parsing: over ``max_message_bytes`` is 413 (checked
on Content-Length first), a body that stalls for ``body_timeout_s`` is 408. A client deadline comes
from ``X-Request-Timeout`` (seconds); a client that disconnects abandons its work, which is dropped
as on gRPC.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from reranker.engine import Engine, RerankInput, RerankOutput
from reranker.errors import (
    ArtifactError,
    CapacityError,
    ConfigError,
    DeadlineError,
    InvalidInputError,
    NotFoundError,
    RerankerError,
    StoreDamagedError,
    bounded,
)
from reranker.server import http_schemas as s
from reranker.server.auth import Auth
from reranker.server.http_cohere import cohere_answer, cohere_input
from reranker.server.metrics import Metrics

STATUS_OF: tuple[tuple[type[BaseException], int, str], ...] = (
    (StoreDamagedError, 503, "DATA_LOSS"),
    (InvalidInputError, 400, "INVALID_ARGUMENT"),
    (ConfigError, 400, "INVALID_ARGUMENT"),
    (NotFoundError, 404, "NOT_FOUND"),
    (CapacityError, 429, "RESOURCE_EXHAUSTED"),
    (DeadlineError, 504, "DEADLINE_EXCEEDED"),
    (ArtifactError, 503, "FAILED_PRECONDITION"),
)
"""The one mapping from the project's exceptions to HTTP statuses (and the gRPC code of the same error)."""
RETRY_AFTER_S = 1
"""``Retry-After`` of a 429."""
TIMEOUT_HEADER = "x-request-timeout"


def status_for(exc: BaseException) -> tuple[int, str]:
    for cls, status, code in STATUS_OF:
        if isinstance(exc, cls):
            return status, code
    return 500, "INTERNAL"


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": bounded(message), "code": code}, status_code=status, headers=headers)


@dataclass
class HttpState:
    """What the routes need; ``engine`` is None while the models load, ``stopping`` once draining."""

    engine: Engine | None
    metrics: Metrics
    auth: Auth
    max_body_bytes: int
    body_timeout_s: float = 10.0
    stopping: bool = False


def deadline_of(header: str | None) -> float | None:
    """A ``time.monotonic()`` deadline from ``X-Request-Timeout`` seconds (None without the header)."""
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidInputError(f"{TIMEOUT_HEADER} must be a number of seconds > 0, got {header[:40]!r}")
    return time.monotonic() + seconds


async def rerank_for(state: HttpState, request: Request, inp: RerankInput) -> RerankOutput:
    """:meth:`Engine.rerank` for one HTTP request, counted under ``transport="http"``; the work is
    abandoned (and dropped by the engine) when the client disconnects."""
    engine = state.engine
    if engine is None or state.stopping:
        raise _Refused(503, "UNAVAILABLE", "the server is loading its models or shutting down; retry shortly")
    deadline = deadline_of(request.headers.get(TIMEOUT_HEADER))
    started = time.monotonic()
    task = asyncio.ensure_future(engine.rerank(inp, deadline=deadline))
    model = inp.model or engine.default
    label = model if model in engine.models or model in engine.cascades else "unknown"
    try:
        while not (await asyncio.wait({task}, timeout=0.05))[0]:
            if await request.is_disconnected():  # the client went away: its work is dropped
                task.cancel()
                raise DeadlineError("the client disconnected; its work was dropped")
        out = task.result()
    except BaseException as exc:
        code = status_for(exc)[1] if isinstance(exc, RerankerError) else "INTERNAL"
        state.metrics.request(label, code, time.monotonic() - started, 0.0, 0, 0, transport="http")
        raise
    stats = out.stats
    state.metrics.request(
        out.model, "OK", out.total_ms / 1000, out.queue_ms / 1000, stats["candidates"], stats["truncated"], transport="http"
    )
    return out


def json_response(data: Any) -> Response:
    """JSON the engine's answer straight away (the response models document it in the OpenAPI; building
    and validating them again for every result cost about 2 ms per 100 results)."""
    return Response(json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), media_type="application/json")


def build_app(state: HttpState) -> FastAPI:
    """The FastAPI application over ``state`` (its OpenAPI at /openapi.json, docs at /docs)."""
    app = FastAPI(
        title="reranker",
        summary="Passage re-ranking: Cohere / Jina / TEI /rerank shapes over the engine the gRPC API serves",
        version="1",
    )

    def authorized(request: Request) -> None:
        if not state.auth.allowed_header(request.headers.get("authorization")):
            raise _Refused(401, "UNAUTHENTICATED", "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    async def run(request: Request, inp: RerankInput) -> RerankOutput:
        return await rerank_for(state, request, inp)

    @app.exception_handler(RerankerError)
    async def on_error(_: Request, exc: RerankerError) -> JSONResponse:
        status, code = status_for(exc)
        return error(status, code, str(exc), {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None)

    @app.exception_handler(_Refused)
    async def on_refused(_: Request, exc: _Refused) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return error(422, "INVALID_ARGUMENT", f"the body does not match the schema ({problems}); see /docs")

    def cohere_route(version: str) -> Callable[..., Awaitable[Response]]:
        async def rerank(body: s.CohereRerankRequest, request: Request) -> Response:
            engine = state.engine
            if engine is None:
                raise _Refused(503, "UNAVAILABLE", "the server is loading its models; retry shortly")
            inp, texts = cohere_input(body, engine)
            return json_response(cohere_answer(await run(request, inp), texts, body.return_documents, version))

        return rerank

    guard = [Depends(authorized)]
    for version in ("1", "2"):
        app.post(
            f"/v{version}/rerank",
            response_model=s.CohereRerankResponse,
            response_model_exclude_none=True,
            dependencies=guard,
            summary=f"Cohere v{version} / Jina re-rank",
            responses={c: {"model": s.ErrorBody} for c in (400, 401, 404, 408, 413, 422, 429, 503, 504)},
        )(cohere_route(version))

    @app.post(
        "/rerank",
        response_model=list[s.TeiResult],
        response_model_exclude_none=True,
        dependencies=guard,
        summary="Text Embeddings Inference re-rank",
        responses={c: {"model": s.ErrorBody} for c in (400, 401, 404, 408, 413, 422, 429, 503, 504)},
    )
    async def tei_rerank(body: s.TeiRerankRequest, request: Request) -> list[s.TeiResult]:
        out = await run(request, RerankInput(body.query, [""] * len(body.texts), body.texts, body.model or ""))
        if not body.truncate and any(r.truncated for r in out.results):
            cut = sorted(r.index for r in out.results if r.truncated)
            raise InvalidInputError(
                f"{len(cut)} text(s) are longer than the model reads (e.g. index {cut[0]}) and "
                "truncate is false; send truncate: true or shorter texts"
            )
        return [
            s.TeiResult(
                index=r.index,
                score=r.score if body.raw_scores else _sigmoid(r.score),
                text=body.texts[r.index] if body.return_text else None,
            )
            for r in out.results
        ]

    @app.get("/health", summary="SERVING once every model answers (503 while loading or draining)")
    async def health() -> JSONResponse:
        ready = state.engine is not None and not state.stopping
        body: dict[str, object] = {"status": "SERVING" if ready else "NOT_SERVING"}
        if state.engine is not None and not state.auth.enabled:  # which stores answer, which still build (names
            # models: left out when a token guards the API; /v1/models says it to authorised clients)
            body["stores"] = {
                d.name: {"status": d.store_status, "progress": round(d.store_progress, 3)} for d in state.engine.describe()
            }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/v1/models", response_model=s.ModelList, dependencies=guard, summary="What ListModels says")
    async def models() -> s.ModelList:
        engine = state.engine
        if engine is None:
            raise _Refused(503, "UNAVAILABLE", "the server is loading its models; retry shortly")
        return s.ModelList(
            data=[
                s.ModelCard(
                    id=d.name,
                    arch=d.arch,
                    precision=d.precision,
                    max_candidates=d.max_candidates,
                    max_passage_tokens=d.max_passage_tokens,
                    store_passages=d.store_passages,
                    is_default=d.name == engine.default,
                    first_stages=list(d.first_stages),
                    window_tokens=d.window_tokens,
                    window_stride=d.window_stride,
                    max_windows_per_candidate=d.max_windows_per_candidate,
                    max_windows_per_request=d.max_windows_per_request,
                    aggregate=d.aggregate,
                    store_status=d.store_status,
                    store_progress=d.store_progress,
                )
                for d in engine.describe()
            ],
            cascades=[
                s.CascadeCard(name=c.name, tiers=list(c.tiers), reserve_ms=c.reserve_ms, reserve_share=c.reserve_share)
                for c in engine.cascades.values()
            ],
        )

    return app


class _Refused(Exception):
    """A refusal decided by the transport itself (auth, readiness)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
