"""Every Prometheus object of the server, on an injectable registry (tests use their own)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from reranker.engine import BatchStats, StatsSink
from reranker.errors import ConfigError

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)
"""Sub-millisecond to a minute: re-ranking spans both."""
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics(StatsSink):
    """Implements the engine's StatsSink and the gRPC method metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "reranker_requests_total",
            "Rerank requests by model, status code (gRPC's name, for HTTP too) and transport (grpc, http)",
            ["model", "code", "transport"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "reranker_request_duration_seconds",
            "Rerank request time in the server, by transport (grpc, http)",
            ["model", "transport"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shed_seconds = Histogram(
            "reranker_shed_duration_seconds",
            "Server time of a Rerank refused for capacity (RESOURCE_EXHAUSTED / 429), by transport",
            ["model", "transport"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "reranker_queue_duration_seconds",
            "Time a request's pairs waited for a batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "reranker_inference_duration_seconds", "Model time per executed batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "reranker_batch_size", "Pairs per executed batch", ["model"], buckets=SIZE_BUCKETS, registry=r
        )
        self.candidates = Histogram(
            "reranker_candidates_per_request", "Candidates per request", ["model"], buckets=SIZE_BUCKETS, registry=r
        )
        self.depth = Gauge("reranker_queue_depth", "Pairs waiting for a batch", ["model"], registry=r)
        self.truncated = Counter(
            "reranker_truncated_total", "Candidates cut to the model's passage length", ["model"], registry=r
        )
        self.lookups = Counter(
            "reranker_store_lookups_total", "Passage-store lookups by result (hit, miss)", ["model", "result"], registry=r
        )
        self.cache_lookups = Counter(
            "reranker_cache_lookups_total",
            "Candidates answered from the score cache (hit) or scored (miss)",
            ["model", "result"],
            registry=r,
        )
        self.cache_bytes = Gauge("reranker_cache_bytes", "Bytes held by the score cache", registry=r)
        self.cascade_answers = Counter(
            "reranker_cascade_answers_total",
            "Requests to a cascade by the tier that answered (a model's name, or first-stage)",
            ["cascade", "tier"],
            registry=r,
        )
        self.dropped_pairs = Counter(
            "reranker_dropped_pairs_total",
            "Pairs of abandoned requests (deadline passed or caller cancelled) not computed, "
            "by the stage that dropped them (pre: before or while preparing; batch: queued "
            "or about to run)",
            ["model", "stage"],
            registry=r,
        )
        self.invalid = Counter(
            "reranker_invalid_scores_total",
            "Scores that came out NaN or infinite and were replaced (the candidate ranked last)",
            ["model"],
            registry=r,
        )
        self.damaged = Gauge(
            "reranker_store_damaged", "1 once a lookup found the model's passage store damaged", ["model"], registry=r
        )
        self.on_store_damaged: list[Callable[[str, str], None]] = []
        """Called with (model, message) when a store is found damaged (the server turns its health)."""
        self.model_info = Gauge(
            "reranker_model_info", "Served models (value 1)", ["model", "arch", "precision", "provider"], registry=r
        )
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.grpc_started = Counter("grpc_server_started_total", "RPCs started on the server", grpc_labels, registry=r)
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by the status code the client received",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.grpc_received = Counter(
            "grpc_server_msg_received_total", "Stream messages received by the server", grpc_labels, registry=r
        )
        self.grpc_sent = Counter("grpc_server_msg_sent_total", "Stream messages sent by the server", grpc_labels, registry=r)
        self.grpc_seconds = Histogram(
            "grpc_server_handling_seconds", "RPC handling time on the server", grpc_labels, buckets=LATENCY_BUCKETS, registry=r
        )

    # --- StatsSink ------------------------------------------------------------------------------
    def batch(self, model: str, stats: BatchStats) -> None:
        self.inference_seconds.labels(model).observe(stats.seconds)
        self.batch_size.labels(model).observe(stats.size)

    def request(
        self,
        model: str,
        code: str,
        seconds: float,
        queue_seconds: float,
        candidates: int,
        truncated: int,
        transport: str = "grpc",
    ) -> None:
        """One answered or refused request; ``code`` is the gRPC status name (HTTP maps to the same names)."""
        self.requests.labels(model, code, transport).inc()
        if code == "RESOURCE_EXHAUSTED":
            self.shed_seconds.labels(model, transport).observe(seconds)
        if code == "OK":
            self.request_seconds.labels(model, transport).observe(seconds)
            self.queue_seconds.labels(model).observe(queue_seconds)
            self.candidates.labels(model).observe(candidates)
            if truncated:
                self.truncated.labels(model).inc(truncated)

    def cache(self, model: str, hits: int, misses: int, nbytes: int) -> None:
        if hits:
            self.cache_lookups.labels(model, "hit").inc(hits)
        if misses:
            self.cache_lookups.labels(model, "miss").inc(misses)
        self.cache_bytes.set(nbytes)

    def cascade(self, cascade: str, tier: str) -> None:
        self.cascade_answers.labels(cascade, tier).inc()

    def store_lookups(self, model: str, hits: int, misses: int) -> None:
        if hits:
            self.lookups.labels(model, "hit").inc(hits)
        if misses:
            self.lookups.labels(model, "miss").inc(misses)

    def queue_depth(self, model: str, depth: int) -> None:
        self.depth.labels(model).set(depth)

    def dropped(self, model: str, items: int, stage: str) -> None:
        self.dropped_pairs.labels(model, stage).inc(items)

    def invalid_scores(self, model: str, items: int) -> None:
        self.invalid.labels(model).inc(items)

    def store_damaged(self, model: str, message: str) -> None:
        self.damaged.labels(model).set(1)
        for callback in self.on_store_damaged:
            callback(model, message)

    # --- gRPC (reranker.server.interceptor) ----------------------------------------------------
    def handled(self, labels: tuple[str, str, str], code: str, seconds: float) -> None:
        self.grpc_handled.labels(*labels, code).inc()
        self.grpc_seconds.labels(*labels).observe(seconds)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _addresses(host: str, port: int) -> list[tuple[str, socket.AddressFamily]]:
    """Where to bind ``host``: a wildcard is ``::`` (dual-stack) then ``0.0.0.0`` (a kernel without
    IPv6); a name or an address its addresses, IPv4 first (what ``localhost`` scrapes usually reach)."""
    address = host.strip("[]")
    if address in ("", "::"):
        return [("::", socket.AF_INET6), ("0.0.0.0", socket.AF_INET)]
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"metrics_host {host!r} cannot be resolved: {exc}") from exc
    found: list[tuple[str, socket.AddressFamily]] = sorted(
        {(str(info[4][0]), info[0]) for info in infos}, key=lambda a: a[1] != socket.AF_INET
    )
    return found


def _bind(host: str, port: int, app: Callable[..., Iterable[bytes]]) -> ThreadingWSGIServer:
    errors = []
    for address, family in _addresses(host, port):
        server_class = type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
        try:
            return make_server(address, port, app, server_class, handler_class=_Quiet)  # type: ignore[return-value]
        except OSError as exc:
            errors.append(f"{address}: {exc}")
    raise ConfigError(f"cannot bind the metrics listener to {host}:{port} ({'; '.join(errors)})")


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, allowed: Callable[[str | None], bool] | None = None
) -> ThreadingWSGIServer:
    """The Prometheus exposition on ``host:port`` (``[::]`` and IPv6 addresses work; port 0 = any free)
    in a daemon thread; with ``allowed``, a request whose ``Authorization`` header it refuses gets 401."""
    app = make_wsgi_app(registry)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if allowed is not None and not allowed(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong bearer token: send 'Authorization: Bearer <token>'\n"]
        return app(environ, start_response)

    httpd = _bind(host, port, guarded)
    threading.Thread(target=httpd.serve_forever, name="reranker-metrics", daemon=True).start()
    return httpd
