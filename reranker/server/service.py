"""The gRPC servicer: messages <-> engine, errors -> status codes (in one place), auth, RPC metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from reranker.engine import Engine, FusionRule, ModelDescription, RerankInput, RerankOutput
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
from reranker.server.auth import Auth
from reranker.server.interceptor import cancelled_code, deadline_of
from reranker.server.metrics import Metrics
from reranker.v1 import reranker_pb2 as pb
from reranker.v1 import reranker_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["Reranker"].full_name

STATUS_OF: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (StoreDamagedError, grpc.StatusCode.DATA_LOSS),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (CapacityError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ArtifactError, grpc.StatusCode.FAILED_PRECONDITION),
)
"""The one mapping from the project's exceptions to gRPC status codes."""


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class MalformedRequest:
    """Stands in for a request whose bytes did not parse (e.g. a string field with invalid UTF-8)."""

    problem: str


def _safe_parser(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return MalformedRequest(str(exc))

    return parse


def add_to_server(service: RerankerService, server: Any) -> None:
    """Register the service as registered methods (gRPC matches their paths in its core, with no
    generic-handler lookup in Python per call); undecodable requests reach it as MalformedRequest
    (INVALID_ARGUMENT), not as a deserialisation failure that gRPC would report as UNKNOWN."""
    handlers = {
        "Rerank": grpc.unary_unary_rpc_method_handler(
            service.Rerank,
            request_deserializer=_safe_parser(pb.RerankRequest),
            response_serializer=pb.RerankResponse.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            service.ListModels,
            request_deserializer=_safe_parser(pb.ListModelsRequest),
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
    }
    server.add_registered_method_handlers(SERVICE, handlers)


def model_info(d: ModelDescription, is_default: bool, max_queue_ms: float) -> pb.ModelInfo:
    """The engine's model description as the API's message."""
    return pb.ModelInfo(
        name=d.name,
        arch=d.arch,
        precision=d.precision,
        provider=d.provider,
        store_passages=d.store_passages,
        store_bytes=d.store_bytes,
        max_candidates=d.max_candidates,
        max_query_tokens=d.max_query_tokens,
        max_passage_tokens=d.max_passage_tokens,
        is_default=is_default,
        score_kind=d.score_kind,
        max_query_chars=d.max_query_chars,
        max_passage_chars=d.max_passage_chars,
        max_queued_pairs=d.max_queued_pairs,
        max_queue_ms=round(max_queue_ms),
        fusion=pb.Fusion(rule=d.fusion.rule, weight=d.fusion.weight),
        first_stages=list(d.first_stages),
        calibrated=d.calibrated,
        window_tokens=d.window_tokens,
        window_stride=d.window_stride,
        max_windows_per_candidate=d.max_windows_per_candidate,
        max_windows_per_request=d.max_windows_per_request,
        aggregate=d.aggregate,
        store_status=d.store_status,
        store_progress=d.store_progress,
        collection_passages=d.collection_passages,
    )


def request_fusion(request: pb.RerankRequest, engine: Engine) -> FusionRule | None:
    """The request's fusion override (None: the model's rule); a missing rule or weight is the model's.
    Raises ConfigError (INVALID_ARGUMENT) for an unknown rule or a weight outside [0, 1]."""
    if not request.HasField("fusion"):
        return None
    base = engine.base_fusion(request.model, request.first_stage)
    f = request.fusion
    return base.override(f.rule, f.weight if f.HasField("weight") else None)


SOURCE = {True: pb.Result.SOURCE_STORE, False: pb.Result.SOURCE_TEXT}


def rerank_input(request: pb.RerankRequest, engine: Engine) -> RerankInput:
    """The engine's input from a request message (one pass over the candidates)."""
    ids: list[str] = []
    texts: list[str] = []
    first: list[float | None] = []
    for c in request.candidates:
        ids.append(c.id)
        texts.append(c.text)
        first.append(c.first_stage_score if c.HasField("first_stage_score") else None)
    return RerankInput(
        request.query,
        ids,
        texts,
        request.model,
        request.top_k,
        first_stage=first if any(s is not None for s in first) else (),
        fusion=request_fusion(request, engine),
        first_stage_kind=request.first_stage,
        min_relevance=request.min_relevance if request.HasField("min_relevance") else None,
        aggregate=request.aggregate,
        tier=request.tier,
        no_fallback=request.no_fallback,
    )


def rerank_response(out: RerankOutput) -> pb.RerankResponse:
    """The engine's answer as the API's message (fields at their default are not set: ~2x faster)."""
    response = pb.RerankResponse(
        model=out.model,
        timing=pb.Timing(queue_ms=out.queue_ms, inference_ms=out.inference_ms, total_ms=out.total_ms),
        below_min_relevance=out.stats.get("below_min_relevance", 0),
        scored_by=out.scored_by,
        reason=out.reason,
    )
    add = response.results.add
    for r in out.results:
        if r.invalid or r.relevance is not None or r.windows > 1:  # every field
            result = add(
                id=r.id,
                index=r.index,
                score=r.score,
                truncated=r.truncated,
                source=SOURCE[r.from_store],
                model_score=r.model_score,
                invalid_score=r.invalid,
                windows=r.windows,
            )
            if r.relevance is not None:  # a calibrated model
                result.relevance = r.relevance
        elif r.truncated:
            add(id=r.id, index=r.index, score=r.score, truncated=True, source=SOURCE[r.from_store], model_score=r.model_score)
        else:
            add(id=r.id, index=r.index, score=r.score, source=SOURCE[r.from_store], model_score=r.model_score)
    return response


class RerankerService(pb_grpc.RerankerServicer):
    def __init__(self, engine: Engine | None, metrics: Metrics, auth: Auth, max_message_bytes: int = 0) -> None:
        self.engine, self.metrics, self.auth = engine, metrics, auth
        """None while the models load: calls get UNAVAILABLE (health is NOT_SERVING then)."""
        self.max_message_bytes = max_message_bytes

    async def _guarded(
        self, method: str, context: grpc.aio.ServicerContext, request: Any, body: Callable[[], Awaitable[Any]]
    ) -> Any:
        model = getattr(request, "model", "")
        started, deadline = time.monotonic(), deadline_of(context)
        code = grpc.StatusCode.OK
        try:
            if not self.auth.allowed(context):
                code = grpc.StatusCode.UNAUTHENTICATED
                await context.abort(code, "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")
            if self.engine is None:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "the server is still loading its models; retry shortly (health is NOT_SERVING)")
            if isinstance(request, MalformedRequest):
                raise InvalidInputError(
                    f"the request could not be parsed ({request.problem}); strings must be "
                    "valid UTF-8 and the message must match reranker.v1"
                )
            return await body()
        except RerankerError as exc:
            code = status_for(exc)
            await context.abort(code, bounded(str(exc)))
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:  # the deadline ran out or the client went away; its work is dropped
            code = cancelled_code(deadline)
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method)
            await context.abort(code, "internal error; the server logged the details")
        finally:
            seconds = time.monotonic() - started
            if method == "Rerank" and code != grpc.StatusCode.OK and self.engine is not None:
                # client-chosen names never become label values: unknown ones share one label
                label = model or self.engine.default
                known = label in self.engine.models or label in self.engine.cascades
                self.metrics.request(label if known else "unknown", code.name, seconds, 0.0, 0, 0, "grpc")

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        async def body() -> pb.RerankResponse:
            remaining = context.time_remaining()
            deadline = time.monotonic() + remaining if remaining is not None else None
            assert self.engine is not None  # checked by _guarded
            out = await self.engine.rerank(rerank_input(request, self.engine), deadline=deadline)
            self.metrics.request(
                out.model, "OK", out.total_ms / 1000.0, out.queue_ms / 1000.0, out.stats["candidates"], out.stats["truncated"]
            )
            return rerank_response(out)

        return await self._guarded("Rerank", context, request, body)

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        async def body() -> pb.ListModelsResponse:
            assert self.engine is not None  # checked by _guarded
            engine = self.engine
            infos = [model_info(d, d.name == engine.default, engine.max_queue_ms) for d in engine.describe()]
            return pb.ListModelsResponse(
                models=infos,
                default_model=engine.default,
                max_message_bytes=self.max_message_bytes,
                max_pending_requests=engine.max_pending_requests,
                max_pending_encodes=engine.max_pending_encodes,
                cascades=[
                    pb.CascadeInfo(
                        name=c.name, tiers=list(c.tiers), reserve_ms=round(c.reserve_ms), reserve_share=c.reserve_share
                    )
                    for c in engine.cascades.values()
                ],
            )

        return await self._guarded("ListModels", context, request, body)
