"""Faults and security: expired or cancelled work is not computed, a full disk while building a
store, tokens from the environment, no pickle anywhere."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

pytest.importorskip("onnxruntime")

from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.engine import BatcherConfig
from reranker.runtime import RuntimeConfig
from reranker.server.config import ModelSpec, ServerConfig

from .conftest import DL19_MINI
from .test_server import launch, metric

ROOT = Path(__file__).resolve().parents[1]
CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)


def test_expired_and_cancelled_work_is_dropped_and_counted(tiny_exports) -> None:
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    texts = [(p, folder.passages[p]) for p, _ in folder.run("bm25")[qid][:20]]
    cfg = ServerConfig(models=(ModelSpec("teacher", str(tiny_exports["bert_cat"][1])),), host="127.0.0.1", port=0,
                       metrics_port=0, runtime=CPU, batching=BatcherConfig(max_batch_size=1, max_batches_per_run=1))
    server = launch(cfg)
    try:
        def busy(_: int) -> str:
            with RerankerClient(server.target, timeout=60) as client:
                return client.rerank(folder.queries[qid], texts).model

        with ThreadPoolExecutor(8) as pool:
            blockers = [pool.submit(busy, i) for i in range(8)]
            time.sleep(0.1)
            with RerankerClient(server.target) as client, pytest.raises(grpc.RpcError) as info:
                client.rerank(folder.queries[qid], texts, timeout=0.03)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert all(b.result() == "teacher" for b in blockers)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dropped = metric(server.metrics(), "reranker_dropped_pairs_total", model="teacher")
            if dropped:
                break
            time.sleep(0.1)
        scored = metric(server.metrics(), "reranker_batch_size_sum", model="teacher")
    finally:
        server.stop()
    assert dropped > 0, "the expired request's pairs were not dropped"
    assert scored < 9 * len(texts), "every pair of the expired request was computed anyway"


def test_full_disk_while_building_a_store(tiny_exports, tmp_path) -> None:
    """A file-size limit makes writes fail as on a full disk: a clear error, no valid-looking store."""
    code = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
sys.path.insert(0, {str(ROOT)!r})
from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.errors import ArtifactError
from reranker.runtime import RuntimeConfig
from reranker.store import PassageStore, build_store
art = Artifact.open({str(tiny_exports["colbert"][1])!r})
passages = DataFolder.open({str(DL19_MINI)!r}).passages
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY))
try:
    build_store(art, passages, {str(tmp_path / "store")!r}, chunk=16, progress=False,
                cfg=RuntimeConfig(provider="cpu", warmup=False))
except ArtifactError as exc:
    print("ERROR:", exc)
try:
    PassageStore.open({str(tmp_path / "store")!r}, art)
except ArtifactError as exc:
    print("OPEN:", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "ERROR: writing the passage store failed" in out and "continues from its last chunk" in out
    assert "OPEN: passage store" in out and "does not exist" in out
    assert not (tmp_path / "store").exists()


def test_token_from_environment(tiny_exports, monkeypatch) -> None:
    monkeypatch.setenv("RERANKER_TEST_TOKEN", "from-env")
    cfg = ServerConfig(models=(ModelSpec("m", str(tiny_exports["tk"][1])),), host="127.0.0.1", port=0,
                       metrics_port=-1, runtime=CPU, token_env="RERANKER_TEST_TOKEN")
    server = launch(cfg)
    try:
        with RerankerClient(server.target, token="from-env") as ok:
            assert ok.list_models()[0].name == "m"
        with RerankerClient(server.target) as anonymous, pytest.raises(grpc.RpcError) as info:
            anonymous.rerank("q", [("a", "text")])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop()


def test_no_pickle_anywhere() -> None:
    """Artifacts are safetensors, JSON, ONNX and raw arrays: nothing may unpickle."""
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.|torch\.load\(|allow_pickle=True|joblib|dill")
    offenders = []
    for folder in ("reranker", "export", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if "/v1/" in str(path):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
