"""The HTTP transport's ASGI guard: request bodies read whole before parsing, bounded in size (413,
on Content-Length first) and in the time between chunks (408, a slow-loris body)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol


class Limits(Protocol):
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def body_timeout_s(self) -> float: ...


class BodyGuard:
    """ASGI middleware: reads a request's body whole, bounded in size (413) and in time between chunks
    (408), before the app parses it; then replays it and passes later messages (a disconnect) through."""

    def __init__(self, app: Any, state: Limits) -> None:
        self.app, self.state = app, state

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.state.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _reply(
                send,
                413,
                f"the body has {length.decode(errors='replace')[:20]} bytes; at most {limit} are allowed (max_message_bytes)",
            )
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.state.body_timeout_s)
            except TimeoutError:
                return await _reply(send, 408, f"the body stalled for {self.state.body_timeout_s:g} s; send it whole")
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _reply(send, 413, f"the body is over {limit} bytes (max_message_bytes)")
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, message: str) -> None:
    body = json.dumps({"message": message, "code": "INVALID_ARGUMENT"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
