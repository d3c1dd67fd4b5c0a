"""Serving commands: run the gRPC server, send one request to it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from reranker.server.app import serve_forever
    from reranker.server.config import ServerConfig, load_config

    given = (("port", args.port), ("metrics_port", args.metrics_port), ("host", args.host), ("http_port", args.http_port))
    overrides = {k: v for k, v in given if v is not None}
    if args.config:
        cfg = load_config(args.config).replace(**overrides)
    else:
        from reranker.provision import default_data, default_spec

        # the artifact is made before the server starts; the store builds while it serves
        cfg = ServerConfig(models=(default_spec(args.data if args.data is not None else default_data()),), **overrides)
    asyncio.run(serve_forever(cfg))
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    import grpc

    from reranker.client import RerankerClient

    ids = [i for i in args.ids.split(",") if i] if args.ids else []
    texts = list(args.text or [])
    candidates: list = [(f"t{i}", t) for i, t in enumerate(texts)] + ids
    if args.first_stage_scores:
        scores = [float(s) for s in args.first_stage_scores.split(",")]
        if len(scores) != len(candidates):
            print(
                f"reranker rerank: --first-stage-scores has {len(scores)} scores for {len(candidates)} candidates "
                "(texts first, then ids); give one per candidate",
                file=sys.stderr,
            )
            return 2
        candidates = [(c, "", s) if isinstance(c, str) else (*c, s) for c, s in zip(candidates, scores, strict=True)]
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("RERANKER_TOKEN")
    with RerankerClient(args.server, token=token, tls_ca=args.tls_ca, timeout=args.timeout) as client:
        try:
            if args.list_models:
                for m in client.list_models():
                    print(
                        f"{m.name:16s} {m.arch:9s} {m.precision:11s} {m.provider:24s} store {m.store_passages:>9d} "
                        f"passages ({m.store_status}{f' {m.store_progress:.0%}' if m.store_status == 'building' else ''})  "
                        f"max {m.max_candidates} candidates{'  (default)' if m.is_default else ''}"
                    )
                return 0
            response = client.rerank(
                args.query,
                candidates,
                model=args.model,
                top_k=args.top_k,
                fusion=args.fusion,
                fusion_weight=args.fusion_weight,
                first_stage=args.first_stage,
            )
        except grpc.RpcError as exc:
            print(f"reranker rerank: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(
        f"model {response.model}: {len(response.results)} results in {response.timing.total_ms:.1f} ms "
        f"(queue {response.timing.queue_ms:.1f} ms)"
    )
    for rank, r in enumerate(response.results, 1):
        own = f"  (model {r.model_score:.4f})" if r.model_score != r.score else ""
        print(f"{rank:4d}  {r.score:10.4f}  {r.id}{own}{'  (truncated)' if r.truncated else ''}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the serve, rerank commands."""
    p = sub.add_parser(
        "serve",
        help="serve models over gRPC (default: the distilled student on DL19 passages)",
        description="With no --config: the default distilled student with a passage store of the "
        "TREC DL 2019 passages (built at first start, then cached in $RERANKER_HOME). "
        "With --config FILE.toml: the models it lists (see reranker/server/config.py).",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML server configuration")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="passages of the default model's store (no --config; default: a clone's "
        "data/msmarco-passage/trec-dl-2019, found from the current directory or beside the package)",
    )
    p.add_argument("--host", default=None, help="bind address (default [::])")
    p.add_argument("--port", type=int, default=None, help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default 9090; 0 = any free)")
    p.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="HTTP /rerank port (Cohere, Jina and TEI shapes; default 8080; 0 = any free; -1 = off)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("rerank", help="send one Rerank request to a running server (for people at a terminal)")
    p.add_argument("--server", default="localhost:50051", help="HOST:PORT")
    p.add_argument("--query", default="", help="the query")
    p.add_argument("--ids", default="", help="comma-separated passage ids (from the server's passage store)")
    p.add_argument("--text", action="append", help="a candidate text (repeatable; ids t0, t1, ...)")
    p.add_argument("--model", default="", help="model name (default: the server's default)")
    p.add_argument("--top-k", type=int, default=0, help="best k only (0 = all)")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    p.add_argument("--token-file", default=None, help="bearer token file (else $RERANKER_TOKEN)")
    p.add_argument("--tls-ca", default=None, help="CA certificate to verify a TLS server")
    p.add_argument(
        "--first-stage-scores",
        default="",
        help="comma-separated first-stage scores, one per candidate (texts first, then ids)",
    )
    p.add_argument(
        "--first-stage",
        default="",
        choices=("", "bm25", "dense", "sparse"),
        help="the kind of first stage the candidates come from: the model's shipped fusion choice for it",
    )
    p.add_argument(
        "--fusion",
        default=None,
        choices=("none", "minmax", "zscore", "rrf"),
        help="override the model's fusion rule for this request",
    )
    p.add_argument("--fusion-weight", type=float, default=None, help="override the re-ranker's share in [0, 1]")
    p.add_argument("--list-models", action="store_true", help="list the served models instead")
    p.set_defaults(func=cmd_rerank)
