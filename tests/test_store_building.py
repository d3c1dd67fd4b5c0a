"""A store built while the model serves: ids answered from their text meanwhile, honest status, then the store."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from reranker.client import RerankerClient
from reranker.data import DataFolder
from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig
from reranker.engine.building import StoreBuild
from reranker.errors import ConfigError, NotFoundError
from reranker.server.config import ServerConfig
from reranker.v1 import reranker_pb2 as pb

from .conftest import DL19_MINI
from .test_server import launch

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)


@pytest.fixture(scope="module")
def folder() -> DataFolder:
    return DataFolder.open(DL19_MINI)


def _request(folder: DataFolder, n: int = 12) -> tuple[str, list[str]]:
    qid = sorted(folder.queries)[0]
    return folder.queries[qid], sorted(folder.passages)[:n]


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[StoreBuild]:
    """Builds are not started by the engine: the test starts them (to see the model serve before)."""
    builds: list[StoreBuild] = []
    monkeypatch.setattr(StoreBuild, "start", lambda self: builds.append(self))
    return builds


def _run(build: StoreBuild) -> None:
    thread = threading.Thread(target=build._run)
    thread.start()
    thread.join(120)


def test_ids_are_scored_from_their_text_until_the_store_is_built_then_from_it(tiny_exports, folder, tmp_path, held) -> None:
    spec = ModelSpec("m", str(tiny_exports["colbert"][1]), str(tmp_path / "store"), passages=str(DL19_MINI), build_store=True)
    query, ids = _request(folder)
    with LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False, cache_mb=0)) as local:
        model = local.engine.models["m"]
        (info,) = local.engine.describe()
        assert (info.store_status, info.store_progress, info.store_passages) == ("building", 0.0, 0)
        assert info.collection_passages == len(folder.passages)
        before = local.rerank(query, ids)
        assert not any(r.from_store for r in before.results)
        texts = local.rerank(query, ids, [folder.passages[p] for p in ids])  # the same as sending the text
        assert {r.id: r.score for r in before.results} == pytest.approx({r.id: r.score for r in texts.results}, abs=1e-5)
        with pytest.raises(NotFoundError, match="nowhere"):
            local.rerank(query, [*ids, "nowhere"])
        _run(held[0])
        (info,) = local.engine.describe()
        assert (info.store_status, info.store_progress, info.store_passages) == ("ready", 1.0, len(folder.passages))
        after = local.rerank(query, ids)
        assert all(r.from_store for r in after.results) and model.prepare.from_codes
        model.prepare.from_codes = False  # the store's decoded states give the same scores
        decoded = local.rerank(query, ids)
        got, want = ({r.id: r.score for r in a.results} for a in (after, decoded))
        np.testing.assert_allclose([got[p] for p in ids], [want[p] for p in ids], rtol=1e-5, atol=1e-5)
    with LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False)) as again:  # the next start opens it
        assert again.engine.describe()[0].store_status == "ready" and not held[1:]


def test_a_cross_encoder_takes_ids_from_its_passages(tiny_exports, folder) -> None:
    spec = ModelSpec("t", str(tiny_exports["bert_cat"][1]), passages=str(DL19_MINI))
    query, ids = _request(folder, 4)
    with LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False, cache_mb=0)) as local:
        by_id = local.rerank(query, ids)
        by_text = local.rerank(query, ids, [folder.passages[p] for p in ids])
        assert local.engine.describe()[0].store_status == "none"
    assert [(r.id, r.score) for r in by_id.results] == [(r.id, r.score) for r in by_text.results]


def test_build_store_needs_a_store_and_passages_and_a_split_model(tiny_exports, tmp_path) -> None:
    with pytest.raises(ConfigError, match="build_store needs store"):
        ModelSpec("m", "a", "s", build_store=True)
    with pytest.raises(ConfigError, match="build_store needs store"):
        ModelSpec("m", "a", passages="p", build_store=True)
    spec = ModelSpec("t", str(tiny_exports["bert_cat"][1]), str(tmp_path / "s"), passages=str(DL19_MINI), build_store=True)
    with pytest.raises(ConfigError, match="no passage state"):
        LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False))
    with pytest.raises(ConfigError, match="passages"):
        LocalEngine(EngineConfig(models=(ModelSpec("t", str(tiny_exports["bert_cat"][1]), passages=str(tmp_path)),), runtime=CPU))


def test_closing_the_engine_stops_the_build_which_continues_at_the_next_start(tiny_exports, tmp_path) -> None:
    passages = {f"p{i}": f"passage {i} " + "word " * (i % 50) for i in range(3000)}
    data = tmp_path / "data"
    data.mkdir()
    (data / "passages.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in passages.items()))
    spec = ModelSpec("m", str(tiny_exports["colbert"][1]), str(tmp_path / "store"), passages=str(data), build_store=True)
    local = LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False))
    build = local.engine.models["m"].build
    assert build is not None
    local.close()
    assert not build._thread.is_alive()
    assert not (tmp_path / "store").exists()  # nothing that looks like a store before it is complete


def test_grpc_http_and_the_cli_say_the_store_is_building(tiny_exports, folder, tmp_path, held, capsys) -> None:
    from reranker.cli import main

    spec = ModelSpec("m", str(tiny_exports["colbert"][1]), str(tmp_path / "store"), passages=str(DL19_MINI), build_store=True)
    live = launch(ServerConfig(models=(spec,), port=0, metrics_port=-1, http_port=0, runtime=CPU))
    try:
        query, ids = _request(folder)
        with RerankerClient(live.target, timeout=30) as client:
            (info,) = client.list_models()
            assert (info.store_status, info.collection_passages) == ("building", len(folder.passages))
            answer = client.rerank(query, ids)
            assert len(answer.results) == len(ids) and all(r.source == pb.Result.SOURCE_TEXT for r in answer.results)
            with pytest.raises(grpc.RpcError) as rpc:
                client.rerank(query, ["nowhere"])
            assert rpc.value.code() == grpc.StatusCode.NOT_FOUND
        with urllib.request.urlopen(f"http://127.0.0.1:{live.running.http_port}/health", timeout=10) as r:
            body = json.loads(r.read())
        assert body == {"status": "SERVING", "stores": {"m": {"status": "building", "progress": 0.0}}}
        assert main(["rerank", "--server", live.target, "--list-models"]) == 0
        assert "(building 0%)" in capsys.readouterr().out
        _run(held[0])
        with RerankerClient(live.target, timeout=30) as client:
            assert client.list_models()[0].store_status == "ready"
        assert main(["rerank", "--server", live.target, "--list-models"]) == 0
        assert f"{len(folder.passages)} passages (ready)" in capsys.readouterr().out
        with RerankerClient(live.target, timeout=30) as client:
            assert all(r.source == pb.Result.SOURCE_STORE for r in client.rerank(query, ids).results)
    finally:
        live.stop()


def test_a_failed_build_is_said_and_ids_stay_answered_from_text(tiny_exports, folder, tmp_path, held) -> None:
    spec = ModelSpec("m", str(tiny_exports["colbert"][1]), str(tmp_path / "store"), passages=str(DL19_MINI), build_store=True)
    query, ids = _request(folder, 5)
    with LocalEngine(EngineConfig(models=(spec,), runtime=CPU, warmup=False)) as local:
        build = held[0]
        build.directory = Path("/proc/no-such-place/store")  # cannot be written
        _run(build)
        assert local.engine.describe()[0].store_status == "failed"
        assert len(local.rerank(query, ids).results) == len(ids)
