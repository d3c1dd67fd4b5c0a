"""Server configuration: frozen dataclasses, loaded from TOML (``reranker serve --config FILE``).

Example::

    default_model = "colbert"

    [server]
    port = 50051
    metrics_port = 9090
    token_file = "/run/secrets/reranker-token"   # optional bearer token

    [batching]
    max_batch_size = 128
    max_wait_s = 0.002

    [runtime]
    provider = "auto"

    [[models]]
    name = "colbert"
    artifact = "artifacts/colbert"
    store = "stores/colbert-dl19"

    [[models]]
    name = "teacher"
    artifact = "artifacts/bert-cat-int8"   # reranker export --precision int8-static
    backend = "openvino"                   # optional: this model on OpenVINO, the others on [runtime]'s
    fusion = { rule = "minmax", weight = 0.6 }   # optional: fuse with first-stage scores

    [[cascades]]                            # optional: requests naming "auto" get the best tier in time
    name = "auto"
    tiers = ["teacher", "colbert", "first-stage"]

``[batching]`` fills :class:`reranker.engine.BatcherConfig`, ``[runtime]``
:class:`reranker.engine.RuntimeConfig`, each ``[[models]]`` a :class:`reranker.engine.ModelSpec`
(with the fields of :class:`reranker.engine.Limits`), each ``[[cascades]]`` a
:class:`reranker.engine.CascadeSpec`; ``[server]`` the fields below.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reranker.engine import BatcherConfig, CascadeSpec, EngineConfig, FusionRule, Limits, ModelSpec, RuntimeConfig
from reranker.errors import ConfigError

__all__ = ["ModelSpec", "ServerConfig", "load_config"]


@dataclass(frozen=True)
class ServerConfig:
    """The whole server: transport settings plus what the engine is built from."""

    models: tuple[ModelSpec, ...]
    """Served models (at least one)."""
    default_model: str = ""
    """Model used when a request names none (default: the first)."""
    host: str = "[::]"
    """Address to bind the gRPC server to."""
    port: int = 50051
    """gRPC port; 0 picks a free one (logged)."""
    metrics_port: int = 9090
    """Prometheus /metrics HTTP port; 0 picks a free one (logged); -1 disables."""
    grace_seconds: float = 10.0
    """On SIGTERM, in-flight requests get this long to finish."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest request or response message."""
    max_concurrent_rpcs: int = 0
    """gRPC calls served at once, of every service (health checks and open health watches count);
    one more is refused with RESOURCE_EXHAUSTED by gRPC itself, before the servicer (and so before the
    metrics of this server, which count only what reaches it); 0 = no bound (admission alone refuses)."""
    tls_cert: str = ""
    """PEM server certificate (with tls_key): serve TLS instead of plaintext."""
    tls_key: str = ""
    """PEM private key of tls_cert."""
    tls_client_ca: str = ""
    """PEM CA bundle: require client certificates signed by it (mutual TLS)."""
    token_file: str = ""
    """File holding the bearer token clients must send (authorization: Bearer ...)."""
    token_env: str = ""
    """Environment variable holding the bearer token (alternative to token_file)."""
    http_port: int = 8080
    """HTTP port of the /rerank API (Cohere / Jina / TEI shapes, reranker.server.http); 0 picks a free
    one (logged); -1 disables it."""
    http_body_timeout_s: float = 10.0
    """An HTTP body that stalls this long between chunks gets 408 (a slow-loris client)."""
    http_max_connections: int = 1000
    """Concurrent HTTP connections (keep-alive ones included); beyond it new ones get 503."""
    metrics_host: str = ""
    """Address of the Prometheus listener (default: ``host``, so a server bound to 127.0.0.1 does not
    expose its metrics on every interface)."""
    metrics_auth: bool = False
    """Require the bearer token on /metrics too (needs token_file or token_env)."""
    reflection: bool = True
    """Serve gRPC reflection (grpcurl, Postman); covered by the bearer token when one is set."""
    keepalive_min_ping_interval_s: float = 1.0
    """Clients may send keepalive pings this often or less often, with or without calls in flight
    (gRPC's default, 5 minutes, answers a client pinging every 10 s with GOAWAY 'too_many_pings');
    a client pinging faster gets GOAWAY after 2 strikes (a ping flood)."""
    keepalive_time_s: float = 60.0
    """The server pings an idle connection this often to find dead peers."""
    keepalive_timeout_s: float = 20.0
    """A connection whose ping is not answered within this is closed."""
    max_connection_age_s: float = 0.0
    """Close connections after this long (GOAWAY, so that clients reconnect and load balancers
    rebalance during rolling restarts); 0 = never."""
    max_connection_age_grace_s: float = 30.0
    """In-flight calls on a connection closed for its age get this long to finish."""
    pre_workers: int = 2
    """Threads that prepare requests (tokenise, encode queries and passages sent as text)."""
    worker_nice: int = 5
    """Nice increment of the engine's worker threads (``EngineConfig.worker_nice``): refusals stay
    quick when the cores are saturated; 0 = one priority for all."""
    max_pending_requests: int = 64
    """Requests that may wait to be prepared; beyond it RESOURCE_EXHAUSTED at once."""
    max_pending_encodes: int = 400
    """Passages sent as text (to split models, ids not in the store) that may wait to be encoded;
    a request that would exceed it gets RESOURCE_EXHAUSTED at once (one request alone is admitted)."""
    max_queue_ms: float = 1000.0
    """Bound on queue time: a request whose estimated wait (the admitted work ahead of it) exceeds it,
    or that could not end before its deadline, is refused at once with RESOURCE_EXHAUSTED (0 = none)."""
    batching: BatcherConfig = field(default_factory=BatcherConfig)
    """The batching budget (per model)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """ONNX Runtime settings."""
    verify_stores: bool = False
    """Check the sha256 of every passage-store file at start (``reranker store verify`` does it offline)."""
    cache_mb: float = 64.0
    """Bound of the score cache in MiB (repeated requests are answered from it); 0 = none."""
    warmup: bool = True
    """Warm up the in-process engine (``EngineConfig.warmup``). The server always sends one request per
    model through the request path before health turns SERVING, whatever this says: SERVING means a
    Rerank would succeed."""
    cascades: tuple[CascadeSpec, ...] = ()
    """Deadline-aware cascades over the models, each under its own name."""
    engine: EngineConfig = field(init=False, repr=False, compare=False)
    """What the engine is built from (derived from the fields above, validated once)."""

    def __post_init__(self) -> None:
        engine = EngineConfig(
            models=self.models,
            default_model=self.default_model,
            batching=self.batching,
            runtime=self.runtime,
            pre_workers=self.pre_workers,
            worker_nice=self.worker_nice,
            max_pending_requests=self.max_pending_requests,
            max_pending_encodes=self.max_pending_encodes,
            max_queue_ms=self.max_queue_ms,
            warmup=self.warmup,
            verify_stores=self.verify_stores,
            cache_mb=self.cache_mb,
            cascades=self.cascades,
        )
        object.__setattr__(self, "engine", engine)  # frozen: set once, here
        for name in ("port", "metrics_port", "http_port"):
            value = getattr(self, name)
            if not -1 <= value <= 65535 or (name == "port" and value < 0):
                raise ConfigError(f"{name} must be a port number (0 = any free port), got {value}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.max_concurrent_rpcs < 0:
            raise ConfigError(f"max_concurrent_rpcs must be >= 0 (0 = no bound), got {self.max_concurrent_rpcs}")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.grace_seconds < 0:
            raise ConfigError(f"grace_seconds must be >= 0, got {self.grace_seconds}")
        times = (
            "keepalive_min_ping_interval_s",
            "keepalive_time_s",
            "keepalive_timeout_s",
            "max_connection_age_s",
            "max_connection_age_grace_s",
        )
        bad = {n: getattr(self, n) for n in times if not 0 <= getattr(self, n) <= 86_400}
        if bad:
            raise ConfigError(f"keepalive and connection-age settings are seconds in [0, 86400], got {bad}")
        if self.keepalive_time_s < 1 or self.keepalive_timeout_s < 1:
            raise ConfigError("keepalive_time_s and keepalive_timeout_s must be >= 1 second")
        if self.keepalive_min_ping_interval_s < 0.01:
            raise ConfigError(
                "keepalive_min_ping_interval_s must be >= 0.01 s (0 would accept a ping flood), got "
                f"{self.keepalive_min_ping_interval_s}"
            )
        if 0 < self.max_connection_age_s < 1:
            raise ConfigError(f"max_connection_age_s must be 0 (never) or >= 1 s, got {self.max_connection_age_s}")
        if not 0 < self.http_body_timeout_s <= 600:
            raise ConfigError(f"http_body_timeout_s must be in (0, 600] seconds, got {self.http_body_timeout_s}")
        if self.http_max_connections < 1:
            raise ConfigError(f"http_max_connections must be >= 1, got {self.http_max_connections}")
        if self.metrics_auth and not (self.token_file or self.token_env):
            raise ConfigError("metrics_auth needs a bearer token: set token_file or token_env")

    def grpc_options(self) -> list[tuple[str, int]]:
        """The gRPC core options of these settings (message sizes, keepalive policy, connection age)."""
        ms = lambda seconds: max(1, round(seconds * 1000))  # noqa: E731
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", 1),
            # on a server: the shortest interval of received pings that is not a strike
            ("grpc.http2.min_ping_interval_without_data_ms", ms(self.keepalive_min_ping_interval_s)),
            ("grpc.http2.max_pings_without_data", 0),  # the server's own pings on idle connections
            ("grpc.http2.max_ping_strikes", 2),
        ]
        if self.max_connection_age_s:
            options += [
                ("grpc.max_connection_age_ms", ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace_s)),
            ]
        return options

    @property
    def default(self) -> str:
        return self.engine.default

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_config(path: str | Path) -> ServerConfig:
    """Read a TOML server configuration; relative paths are taken from the file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read server config {path}: {exc}") from exc
    base = path.parent
    models = []
    for i, m in enumerate(raw.pop("models", [])):
        limit_keys = {f.name for f in dataclasses.fields(Limits)}
        limits = _build(Limits, {k: v for k, v in m.items() if k in limit_keys}, f"{path} models[{i}]")
        rest = {k: v for k, v in m.items() if k not in limit_keys}
        if "fusion" in rest:
            if not isinstance(rest["fusion"], dict):
                raise ConfigError(
                    f'{path} models[{i}]: fusion must be a table, e.g. fusion = {{ rule = "minmax", weight = 0.6 }}'
                )
            rest["fusion"] = _build(FusionRule, rest["fusion"], f"{path} models[{i}].fusion")
        for key in ("artifact", "store", "passages"):
            if rest.get(key):
                rest[key] = str((base / rest[key]).resolve())
        models.append(_build(ModelSpec, {**rest, "limits": limits}, f"{path} models[{i}]"))
    cascades = tuple(_build(CascadeSpec, dict(c), f"{path} cascades[{i}]") for i, c in enumerate(raw.pop("cascades", [])))
    server = dict(raw.pop("server", {}))
    for key in ("tls_cert", "tls_key", "tls_client_ca", "token_file"):
        if server.get(key):
            server[key] = str((base / server[key]).resolve())
    batching = _build(BatcherConfig, raw.pop("batching", {}), f"{path} [batching]")
    runtime = _build(RuntimeConfig, raw.pop("runtime", {}), f"{path} [runtime]")
    top = {k: raw.pop(k) for k in list(raw) if k == "default_model"}
    if raw:
        raise ConfigError(
            f"{path}: unknown sections or keys {sorted(raw)}; allowed: default_model, [server], [batching], [runtime], "
            "[[models]], [[cascades]]"
        )
    built = {"models": tuple(models), "cascades": cascades, "batching": batching, "runtime": runtime}
    return _build(ServerConfig, {**server, **top, **built}, f"{path} [server]")
