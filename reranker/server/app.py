"""Building and running the gRPC server: models, health, reflection, metrics, TLS, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import start_http_server

from reranker.engine import Engine
from reranker.errors import ConfigError
from reranker.server.auth import Auth, credentials, read_token
from reranker.server.config import ServerConfig
from reranker.server.interceptor import Instrumented
from reranker.server.metrics import Metrics
from reranker.server.service import RerankerService, add_to_server
from reranker.v1 import reranker_pb2 as pb

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reranker"].full_name


def load_engine(cfg: ServerConfig, metrics: Metrics) -> Engine:
    """Build the engine from the configured model specs (artifact checksums verified, stores checked)."""
    engine = Engine.from_config(cfg.engine, metrics)
    for d in engine.describe():
        metrics.model_info.labels(d.name, d.arch, d.precision, d.provider).set(1)
    return engine


@dataclass
class Running:
    """A started server: its ports and the handles needed to stop it."""

    server: grpc.aio.Server
    engine: Engine
    health: health.aio.HealthServicer
    metrics: Metrics
    port: int
    metrics_port: int | None
    grace: float
    _http: object | None = None

    async def stop(self) -> None:
        """Graceful stop: health NOT_SERVING first, refuse new RPCs, let in-flight ones finish."""
        await self.health.enter_graceful_shutdown()
        log.info("shutting down: health NOT_SERVING, waiting up to %.1fs for in-flight requests", self.grace)
        await self.server.stop(self.grace)
        await self.engine.close()
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]


async def start(cfg: ServerConfig, *, metrics: Metrics | None = None, engine: Engine | None = None) -> Running:
    """Load models, then serve; health turns SERVING only once every model is loaded and has answered
    a request through the request path (a Rerank would succeed).

    The models must exist: provisioning (export, index) happens before, see :mod:`reranker.provision`.
    """
    metrics = metrics or Metrics()
    auth = Auth(read_token(cfg))
    options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
               ("grpc.max_send_message_length", cfg.max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options)
    counted = Instrumented(server, metrics)  # every service's calls counted: reranker, health, reflection
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, counted)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)), counted)
    service = RerankerService(None, metrics, auth, cfg.max_message_bytes)
    add_to_server(service, counted)
    address = f"{cfg.host}:{cfg.port}"
    creds = credentials(cfg)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if port == 0:
        raise ConfigError(f"cannot bind the gRPC server to {address}")
    http, metrics_port = None, None
    if cfg.metrics_port >= 0:
        http, _ = start_http_server(cfg.metrics_port, registry=metrics.registry)
        metrics_port = http.server_port
    await server.start()
    log.info("gRPC on %s:%d (%s), metrics on http://localhost:%s/metrics; loading models", cfg.host, port,
             "TLS" if creds else "plaintext", metrics_port)
    try:
        if engine is None:
            engine = await asyncio.get_running_loop().run_in_executor(None, load_engine, cfg, metrics)
        # readiness on every start path (loaded here or given, warm-up configured or not): one request
        # per model through the request path must succeed before health says SERVING
        await engine.warm_up()
    except BaseException:
        await server.stop(0)  # never serve garbage: a model that fails to load or answer stops the server
        if http is not None:
            http.shutdown()
        raise
    service.engine = engine
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s (default %s)", ", ".join(engine.models), engine.default)
    return Running(server, engine, health_servicer, metrics, port, metrics_port, cfg.grace_seconds, http)


async def serve_forever(cfg: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    running = await start(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
