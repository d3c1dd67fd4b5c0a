"""Running the HTTP transport (:mod:`reranker.server.http`) on uvicorn inside the server's own event
loop, beside gRPC: no signal handlers of its own (the server's handle SIGTERM / SIGHUP), its own port,
TLS with the gRPC settings' certificate."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn

from reranker.errors import ConfigError
from reranker.server.config import ServerConfig
from reranker.server.http import HttpState, build_app
from reranker.server.http_guard import BodyGuard


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the server's own handlers stay in charge
        yield


class HttpServer:
    """uvicorn serving ``state`` on ``cfg.host:cfg.http_port`` (0 = a free port) in the running loop."""

    def __init__(self, cfg: ServerConfig, state: HttpState) -> None:
        tls: dict[str, Any] = {}
        if cfg.tls_cert:
            tls = {"ssl_certfile": cfg.tls_cert, "ssl_keyfile": cfg.tls_key}
            if cfg.tls_client_ca:
                tls.update(ssl_ca_certs=cfg.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = uvicorn.Config(
            BodyGuard(build_app(state), state),
            host=cfg.host.strip("[]"),
            port=cfg.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            limit_concurrency=cfg.http_max_connections,
            h11_max_incomplete_event_size=64 * 1024,
            server_header=False,
            **tls,
        )  # type: ignore[arg-type]
        self.state, self.tls = state, bool(tls)
        self._host = cfg.host.strip("[]")
        self._server = _Embedded(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Serve; returns the bound port. ConfigError when the port cannot be bound."""
        sockets = [self._wildcard_socket()] if self._host in ("", "::", "0.0.0.0") else None
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=sockets))
        while not self._server.started:
            if self._task.done():
                raise ConfigError(f"cannot start the HTTP server: {self._task.exception() or 'it stopped'}")
            await asyncio.sleep(0.01)
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def _wildcard_socket(self) -> socket.socket:
        """One listening socket for every interface: dual-stack ``::`` (asyncio would bind IPv6 only, or two
        sockets on two ports for port 0), else ``0.0.0.0`` on a kernel without IPv6."""
        port = self._server.config.port
        try:
            if self._host == "0.0.0.0":
                raise OSError("IPv4 asked for")
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            address: tuple[str, int] = ("::", port)
        except OSError:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("0.0.0.0", port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot bind the HTTP server to port {port}: {exc}") from exc
        sock.set_inheritable(True)
        return sock

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (the engine is closed after this)."""
        self.state.stopping = True
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
