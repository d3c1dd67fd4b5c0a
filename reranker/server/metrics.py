"""Every Prometheus object of the server, on an injectable registry (tests use their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reranker.engine import BatchStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)
"""Sub-millisecond to a minute: re-ranking spans both."""
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """Implements the engine's StatsSink and the gRPC method metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("reranker_requests_total", "Rerank requests by model and status code",
                                ["model", "code"], registry=r)
        self.request_seconds = Histogram("reranker_request_duration_seconds", "Rerank request time in the server",
                                         ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("reranker_queue_duration_seconds", "Time a request's pairs waited for a batch",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("reranker_inference_duration_seconds", "Model time per executed batch",
                                           ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("reranker_batch_size", "Pairs per executed batch", ["model"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.candidates = Histogram("reranker_candidates_per_request", "Candidates per request", ["model"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.depth = Gauge("reranker_queue_depth", "Pairs waiting for a batch", ["model"], registry=r)
        self.truncated = Counter("reranker_truncated_total", "Candidates cut to the model's passage length",
                                 ["model"], registry=r)
        self.lookups = Counter("reranker_store_lookups_total", "Passage-store lookups by result (hit, miss)",
                               ["model", "result"], registry=r)
        self.dropped_pairs = Counter("reranker_dropped_pairs_total",
                                     "Queued pairs dropped uncomputed because their deadline passed or the caller "
                                     "cancelled", ["model"], registry=r)
        self.model_info = Gauge("reranker_model_info", "Served models (value 1)",
                                ["model", "arch", "precision", "provider"], registry=r)
        self.handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by method and code",
                               ["grpc_method", "grpc_code"], registry=r)
        self.handling_seconds = Histogram("grpc_server_handling_seconds", "RPC handling time on the server",
                                          ["grpc_method"], buckets=LATENCY_BUCKETS, registry=r)

    # --- StatsSink ------------------------------------------------------------------------------
    def batch(self, model: str, stats: BatchStats) -> None:
        self.inference_seconds.labels(model).observe(stats.seconds)
        self.batch_size.labels(model).observe(stats.size)

    def request(self, model: str, code: str, seconds: float, queue_seconds: float, candidates: int,
                truncated: int) -> None:
        self.requests.labels(model, code).inc()
        if code == "OK":
            self.request_seconds.labels(model).observe(seconds)
            self.queue_seconds.labels(model).observe(queue_seconds)
            self.candidates.labels(model).observe(candidates)
            if truncated:
                self.truncated.labels(model).inc(truncated)

    def store_lookups(self, model: str, hits: int, misses: int) -> None:
        if hits:
            self.lookups.labels(model, "hit").inc(hits)
        if misses:
            self.lookups.labels(model, "miss").inc(misses)

    def queue_depth(self, model: str, depth: int) -> None:
        self.depth.labels(model).set(depth)

    def dropped(self, model: str, items: int) -> None:
        self.dropped_pairs.labels(model).inc(items)

    # --- gRPC -----------------------------------------------------------------------------------
    def rpc(self, method: str, code: str, seconds: float) -> None:
        self.handled.labels(method, code).inc()
        self.handling_seconds.labels(method).observe(seconds)
