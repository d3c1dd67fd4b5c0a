"""Who may call: bearer tokens (constant-time comparison) and TLS server credentials."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path

import grpc

from reranker.errors import ConfigError
from reranker.server.config import ServerConfig


class Auth:
    """Bearer-token check, constant-time; no token configured = open. The scheme is matched
    case-insensitively (RFC 7235: ``Bearer``, ``bearer`` and ``BEARER`` are one scheme)."""

    def __init__(self, token: str | None) -> None:
        self._expected = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def allowed_header(self, value: str | bytes | None) -> bool:
        """Whether an ``authorization`` header value carries the token."""
        if self._expected is None:
            return True
        if value is None:
            return False
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, given = text.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._expected)

    def allowed_metadata(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        if self._expected is None:
            return True
        for key, value in metadata or ():
            if key == "authorization":
                return self.allowed_header(value)
        return False

    def allowed(self, context: grpc.aio.ServicerContext) -> bool:
        return self.allowed_metadata(context.invocation_metadata())  # type: ignore[arg-type]


def read_token(cfg: ServerConfig) -> str | None:
    """The configured bearer token (from token_file or token_env), None when there is none;
    :class:`ConfigError` when the file cannot be read, or the token is empty or not printable ASCII
    (gRPC metadata and HTTP headers carry nothing else)."""
    token = _raw_token(cfg)
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise ConfigError("the bearer token must be printable ASCII without spaces")
    return token


def _raw_token(cfg: ServerConfig) -> str | None:
    if cfg.token_file:
        try:
            token = Path(cfg.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file {cfg.token_file}: {exc}") from exc
        if not token:
            raise ConfigError(f"token_file {cfg.token_file} is empty")
        return token
    if cfg.token_env:
        token = os.environ.get(cfg.token_env, "").strip()
        if not token:
            raise ConfigError(f"token_env {cfg.token_env} is not set or empty")
        return token
    return None


def credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS (mutual TLS with tls_client_ca) credentials, None for plaintext."""
    if not cfg.tls_cert:
        return None
    try:
        key, cert = Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes()
        ca = Path(cfg.tls_client_ca).read_bytes() if cfg.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
