"""The standard gRPC server metrics, as the ecosystem's interceptors name and label them
(py-grpc-prometheus, go-grpc-prometheus): ``grpc_server_started_total``,
``grpc_server_handled_total``, ``grpc_server_msg_received_total``, ``grpc_server_msg_sent_total``
and ``grpc_server_handling_seconds``, labelled ``grpc_type``, ``grpc_service``, ``grpc_method``
(and ``grpc_code`` when handled), for every service of the server: health checks and reflection too.

The code is the status the client received: a call whose deadline ran out is DEADLINE_EXCEEDED,
one the client cancelled CANCELLED.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from reranker.server.auth import Auth
from reranker.server.metrics import Metrics

DEADLINE_SLACK_S = 0.005
"""A cancellation this close to the deadline counts as the deadline running out (clocks differ)."""


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline as a ``time.monotonic()`` instant (None = none)."""
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None else None


def cancelled_code(deadline: float | None) -> grpc.StatusCode:
    """What the client of a cancelled call received: DEADLINE_EXCEEDED when its deadline ran out."""
    if deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_S:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, instrumented: Instrumented) -> None:
        self.inner, self.instrumented = inner, instrumented

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        handler = self.inner.service(details)
        return None if handler is None else self.instrumented.wrap(handler, details.method)


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None, deadline: float | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return cancelled_code(deadline).name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    return "UNKNOWN"


class Instrumented:
    """Stands in for a ``grpc.aio.Server`` while services register: every method handler it is given
    is wrapped to count and time its calls, then registered on the real server. (Wrapping at
    registration, not with a ``grpc.aio.ServerInterceptor``: an interceptor's asynchronous lookup
    let calls that arrived just before a graceful stop be cancelled instead of finished.)"""

    def __init__(
        self, server: grpc.aio.Server, metrics: Metrics, *, auth: Auth | None = None, guarded: Sequence[str] = ()
    ) -> None:
        self.server, self.metrics = server, metrics
        self.auth, self.guarded = auth, frozenset(guarded)
        """Services whose calls need the bearer token (the Reranker service checks it itself)."""

    async def _check(self, service: str, context: grpc.aio.ServicerContext) -> None:
        if service in self.guarded and self.auth is not None and not self.auth.allowed(context):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'"
            )

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_Generic(h, self) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(
            service, {name: self.wrap(h, f"/{service}/{name}") for name, h in handlers.items()}
        )

    def wrap(self, handler: Any, path: str) -> Any:
        """``handler`` with its behaviour counted and timed under the labels of ``path``."""
        service, _, method = path.lstrip("/").rpartition("/")
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, "unary", service, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, "server_stream", service, method, False))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, "client_stream", service, method, True))
        return handler._replace(stream_stream=self._stream(handler.stream_stream, "bidi_stream", service, method, True))

    def _counted(self, requests: Any, labels: tuple[str, str, str]) -> AsyncIterator[Any]:
        async def gen() -> AsyncIterator[Any]:
            async for message in requests:
                self.metrics.grpc_received.labels(*labels).inc()
                yield message

        return gen()

    def _unary(
        self, behavior: Callable[..., Awaitable[Any]], kind: str, service: str, method: str, streamed_in: bool = False
    ) -> Callable[..., Awaitable[Any]]:
        labels = (kind, service, method)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, deadline, error = time.monotonic(), deadline_of(context), None
            self.metrics.grpc_started.labels(*labels).inc()
            if streamed_in:
                request = self._counted(request, labels)
            else:
                self.metrics.grpc_received.labels(*labels).inc()
            try:
                await self._check(service, context)
                response = await behavior(request, context)
                self.metrics.grpc_sent.labels(*labels).inc()
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.metrics.handled(labels, _code_of(context, error, deadline), time.monotonic() - started)

        return wrapped

    def _stream(
        self, behavior: Callable[..., Any], kind: str, service: str, method: str, streamed_in: bool
    ) -> Callable[..., AsyncIterator[Any]]:
        labels = (kind, service, method)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, deadline, error = time.monotonic(), deadline_of(context), None
            self.metrics.grpc_started.labels(*labels).inc()
            if streamed_in:
                request = self._counted(request, labels)
            else:
                self.metrics.grpc_received.labels(*labels).inc()
            try:
                await self._check(service, context)
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for message in result:
                        self.metrics.grpc_sent.labels(*labels).inc()
                        yield message
                else:  # a coroutine that writes with context.write
                    await result
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.metrics.handled(labels, _code_of(context, error, deadline), time.monotonic() - started)

        return wrapped
