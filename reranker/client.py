"""A small synchronous Python client for the reranker gRPC API.

>>> # with RerankerClient("localhost:50051") as client:
>>> #     response = client.rerank("what is a flea", [("p1", ""), ("p2", "Fleas are insects.")])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reranker.v1 import reranker_pb2 as pb
from reranker.v1 import reranker_pb2_grpc as pb_grpc

Candidate = str | tuple[str, str] | tuple[str, str, float]
"""An id (its text is in the server's passage store), an (id, text) pair, or (id, text, first-stage
score) (text may be empty for a stored id)."""


def _add_candidates(request: pb.RerankRequest, candidates: Iterable[Candidate]) -> None:
    """Append ``candidates`` to ``request`` (``add`` in place: ~3x faster than building each message)."""
    add = request.candidates.add
    for c in candidates:
        if isinstance(c, str):
            add(id=c)
        elif len(c) == 3:
            add(id=c[0], text=c[1], first_stage_score=c[2])  # type: ignore[misc]
        else:
            add(id=c[0], text=c[1])


class RerankerClient:
    """Blocking client; one channel per client, usable as a context manager."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes), ("grpc.max_send_message_length", max_message_bytes)]
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes(),
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.RerankerStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def rerank(
        self,
        query: str,
        candidates: Iterable[Candidate],
        *,
        model: str = "",
        top_k: int = 0,
        timeout: float | None = None,
        fusion: str | None = None,
        fusion_weight: float | None = None,
        first_stage: str = "",
        min_relevance: float | None = None,
        aggregate: str = "",
        tier: str = "",
        no_fallback: bool = False,
    ) -> pb.RerankResponse:
        """``fusion`` ('none', 'minmax', 'zscore', 'rrf') and ``fusion_weight`` override the model's rule;
        ``first_stage`` ('bm25', 'dense', 'sparse') names the candidates' first stage, whose shipped
        fusion choice the model then applies; ``min_relevance`` drops results of a calibrated model below
        that probability (``RerankResponse.below_min_relevance`` counts them); ``aggregate`` ('max',
        'first-max', 'first') says how texts longer than the model reads are scored from their windows;
        for a cascade, ``tier`` pins the tier that scores and ``no_fallback`` allows only its first."""
        request = pb.RerankRequest(
            query=query,
            model=model,
            top_k=top_k,
            first_stage=first_stage,
            aggregate=aggregate,
            tier=tier,
            no_fallback=no_fallback,
        )
        if min_relevance is not None:
            request.min_relevance = min_relevance
        _add_candidates(request, candidates)
        if fusion is not None or fusion_weight is not None:
            request.fusion.rule = fusion or ""
            if fusion_weight is not None:
                request.fusion.weight = fusion_weight
        return self.stub.Rerank(request, timeout=timeout or self.timeout, metadata=self.metadata)

    def list_models(self) -> Sequence[pb.ModelInfo]:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout, metadata=self.metadata).models

    def health(self, service: str = "") -> str:
        """SERVING, NOT_SERVING, ... as a name."""
        response = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RerankerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
