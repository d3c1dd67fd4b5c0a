"""max_concurrent_rpcs: gRPC itself refuses calls beyond the bound, before the servicer."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

pytest.importorskip("onnxruntime")

from reranker.client import RerankerClient
from reranker.engine import RuntimeConfig
from reranker.errors import ConfigError
from reranker.server.config import ModelSpec, ServerConfig

from .test_server import launch


def test_calls_beyond_the_bound_are_refused_at_once(tiny_exports) -> None:
    spec = ModelSpec("t", str(tiny_exports["bert_cat"][1]))
    live = launch(
        ServerConfig(models=(spec,), port=0, metrics_port=-1, max_concurrent_rpcs=1, runtime=RuntimeConfig(intra_op_threads=1))
    )
    model = live.running.engine.models["t"]
    real, entered = model.batcher._run_batch, threading.Event()

    def slow(pairs):
        entered.set()
        time.sleep(2.0)
        return real(pairs)

    model.batcher._run_batch = slow
    try:
        with RerankerClient(live.target, timeout=10) as client:
            answers: list[int] = []
            first = threading.Thread(target=lambda: answers.append(len(client.rerank("q", [("a", "some text")]).results)))
            first.start()
            assert entered.wait(5)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                client.rerank("q", [("b", "other text")])
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - started < 1.5  # refused at once, not after the first call's 2 s
            first.join(10)
            assert answers == [1]  # the call within the bound is answered
    finally:
        model.batcher._run_batch = real
        live.stop()


def test_the_bound_is_not_negative() -> None:
    with pytest.raises(ConfigError, match="max_concurrent_rpcs"):
        ServerConfig(models=(ModelSpec("m", "a"),), max_concurrent_rpcs=-1)
