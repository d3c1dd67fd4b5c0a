"""Building and running the gRPC server: models, health, reflection, metrics, TLS, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from reranker.engine import Engine
from reranker.errors import ConfigError
from reranker.server.auth import Auth, credentials, read_token
from reranker.server.config import ServerConfig
from reranker.server.http import HttpState
from reranker.server.http_server import HttpServer
from reranker.server.interceptor import Instrumented
from reranker.server.metrics import Metrics, serve_metrics
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
    _on_damaged: object | None = None
    http_server: HttpServer | None = None
    http_port: int | None = None

    async def stop(self) -> None:
        """Graceful stop: health NOT_SERVING first, refuse new RPCs, let in-flight ones finish."""
        if self._on_damaged in self.metrics.on_store_damaged:
            self.metrics.on_store_damaged.remove(self._on_damaged)  # type: ignore[arg-type]
        await self.health.enter_graceful_shutdown()
        if self.http_server is not None:
            self.http_server.state.stopping = True  # HTTP health 503, new requests 503
        log.info("shutting down: health NOT_SERVING, waiting up to %.1fs for in-flight requests", self.grace)
        await self.server.stop(self.grace)
        if self.http_server is not None:
            await self.http_server.stop()
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
    server = grpc.aio.server(options=cfg.grpc_options(), maximum_concurrent_rpcs=cfg.max_concurrent_rpcs or None)
    # every service's calls counted (reranker, health, reflection); reflection needs the token when one
    # is set, health stays open (probes carry no token)
    counted = Instrumented(server, metrics, auth=auth, guarded=(reflection.SERVICE_NAME,))
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, counted)
    if cfg.reflection:
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)), counted
        )
    service = RerankerService(None, metrics, auth, cfg.max_message_bytes)
    add_to_server(service, counted)
    address = f"{cfg.host}:{cfg.port}"
    creds = credentials(cfg)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if port == 0:
        raise ConfigError(f"cannot bind the gRPC server to {address}")
    http, metrics_port = None, None
    if cfg.metrics_port >= 0:
        http = serve_metrics(
            cfg.metrics_host or cfg.host, cfg.metrics_port, metrics.registry, auth.allowed_header if cfg.metrics_auth else None
        )
        metrics_port = http.server_port
    await server.start()
    http_server = http_port = None
    state = HttpState(None, metrics, auth, cfg.max_message_bytes, cfg.http_body_timeout_s)
    if cfg.http_port >= 0:
        http_server = HttpServer(cfg, state)
        try:
            http_port = await http_server.start()
        except BaseException:
            await server.stop(0)
            raise
        log.info("HTTP /rerank on %s:%d (%s; OpenAPI at /docs)", cfg.host, http_port, "TLS" if http_server.tls else "plaintext")
    log.info(
        "gRPC on %s:%d (%s), metrics on http://localhost:%s/metrics; loading models",
        cfg.host,
        port,
        "TLS" if creds else "plaintext",
        metrics_port,
    )
    log.info(
        "keepalive: client pings every >= %gs accepted (with or without calls), server pings idle "
        "connections every %gs; max connection age %s",
        cfg.keepalive_min_ping_interval_s,
        cfg.keepalive_time_s,
        f"{cfg.max_connection_age_s:g}s (+{cfg.max_connection_age_grace_s:g}s grace)"
        if cfg.max_connection_age_s
        else "unlimited",
    )
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
        if http_server is not None:
            await http_server.stop()
        raise
    service.engine = engine
    state.engine = engine
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    for name in engine.models:  # one health entry per model: NOT_SERVING once its store is found damaged
        await health_servicer.set(model_health_name(name), health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()

    turned: dict[str, asyncio.Task[None]] = {}

    def damaged(model: str, message: str) -> None:
        if model not in turned:  # once per model
            log.error("model %s: %s; its health (%s) is NOT_SERVING", model, message, model_health_name(model))
            turned[model] = loop.create_task(
                health_servicer.set(model_health_name(model), health_pb2.HealthCheckResponse.NOT_SERVING)
            )

    metrics.on_store_damaged.append(damaged)
    log.info("serving %s (default %s)", ", ".join(engine.models), engine.default)
    return Running(
        server, engine, health_servicer, metrics, port, metrics_port, cfg.grace_seconds, http, damaged, http_server, http_port
    )


def model_health_name(model: str) -> str:
    """The health-check service name of one served model, e.g. ``reranker.v1.Reranker/default``."""
    return f"{SERVICE_NAME}/{model}"


async def serve_forever(cfg: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (health NOT_SERVING, in-flight calls finish
    within ``grace_seconds``). While the models load, SIGTERM and SIGINT end the process at once, as
    they would without handlers. SIGHUP (log rotation, a closed terminal) is logged and ignored: the
    server neither stops nor reloads. Every signal is logged."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def while_loading(sig: signal.Signals) -> None:
        log.info("received %s while loading models: exiting", sig.name)
        loop.remove_signal_handler(sig)
        os.kill(os.getpid(), sig)  # the default action: end now

    def on_stop(sig: signal.Signals) -> None:
        log.info("received %s: draining (health NOT_SERVING, in-flight requests get %.1fs)", sig.name, cfg.grace_seconds)
        stop.set()

    loop.add_signal_handler(
        signal.SIGHUP,
        lambda: log.info("received SIGHUP: ignored (the server does not reload; restart it to load new models or stores)"),
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, while_loading, sig)
    running = await start(cfg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    await stop.wait()
    await running.stop()
