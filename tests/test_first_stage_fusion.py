"""Fusion with first-stage scores (reranker.fusion): the rule, the server (per model and per request),
the config file, and `reranker evaluate` / `reranker pick-fusion` applying the same implementation."""

from __future__ import annotations

import json
import math

import grpc
import pytest

from reranker.cli import main
from reranker.data import DataFolder, write_run
from reranker.errors import ConfigError, InvalidInputError
from reranker.fusion import FusionRule, fuse_run, parse_rule

from .conftest import DL19_MINI, copy_with_config


def test_rules_by_hand() -> None:
    model, first = [3.0, 1.0, 2.0], [10.0, 30.0, 20.0]
    assert FusionRule("minmax", 1.0).fuse(model, first) == [1.0, 0.0, 0.5]
    assert FusionRule("minmax", 0.0).fuse(model, first) == [0.0, 1.0, 0.5]
    z = FusionRule("zscore", 0.5).fuse(model, first)
    assert z == pytest.approx([0.0, 0.0, 0.0])  # opposite orders, equal spread
    r = FusionRule("rrf", 0.3, rrf_k=10).fuse(model, first)
    assert r[0] == pytest.approx(0.3 / 11 + 0.7 / 13) and r[1] == pytest.approx(0.3 / 13 + 0.7 / 11)
    assert FusionRule("minmax", 0.5).fuse([1.0, 1.0], [2.0, 2.0]) == [0.0, 0.0]  # constant: no division by 0
    assert FusionRule().fuse(model, first) == model


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rule": "mean"}, "must be one of"),
        ({"rule": "rrf", "weight": 1.5}, r"\[0, 1\]"),
        ({"rule": "rrf", "rrf_k": 0}, "rrf_k"),
        ({"weight": math.nan}, r"\[0, 1\]"),
    ],
)
def test_bad_rules_are_refused(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        FusionRule(**kwargs)


def test_bad_first_stage_scores_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        FusionRule("minmax", 0.5).fuse([1.0, 2.0], [1.0, math.inf])
    with pytest.raises(InvalidInputError, match="one first-stage score per candidate"):
        FusionRule("minmax", 0.5).fuse([1.0, 2.0], [1.0])
    assert parse_rule("zscore:0.25") == FusionRule("zscore", 0.25) and parse_rule("none") == FusionRule()


def test_fuse_run_weight_ends_are_the_two_rankings() -> None:
    first = {"q": [("a", 3.0), ("b", 2.0), ("c", 1.0)]}
    model = {("q", "a"): 0.1, ("q", "b"): 0.9, ("q", "c"): 0.5}
    assert [p for p, _ in fuse_run(first, model, FusionRule("rrf", 0.0))["q"]] == ["a", "b", "c"]
    assert [p for p, _ in fuse_run(first, model, FusionRule("minmax", 1.0))["q"]] == ["b", "c", "a"]
    assert [p for p, _ in fuse_run(first, model, FusionRule())["q"]] == ["b", "c", "a"]


@pytest.fixture(scope="module")
def fused_server(tiny_exports, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from reranker.engine import BatcherConfig, RuntimeConfig
    from reranker.server.config import load_config

    from .test_server import launch

    root = tmp_path_factory.mktemp("fusion")
    art = tiny_exports["bert_cat"][1]
    (root / "server.toml").write_text(f'''
[server]
host = "127.0.0.1"
port = 0
metrics_port = -1
http_port = 0
[runtime]
provider = "cpu"
intra_op_threads = 1
[[models]]
name = "plain"
artifact = "{art}"
[[models]]
name = "fused"
artifact = "{art}"
fusion = {{ rule = "minmax", weight = 0.25 }}
''')
    cfg = load_config(root / "server.toml")
    assert cfg.models[1].fusion == FusionRule("minmax", 0.25)
    assert isinstance(cfg.batching, BatcherConfig) and isinstance(cfg.runtime, RuntimeConfig)
    live = launch(cfg)
    yield live
    live.stop()


def _request(n: int = 6) -> tuple[str, list[tuple[str, str, float]]]:
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    cands = folder.run("bm25")[qid][:n]
    return folder.queries[qid], [(p, folder.passages[p], s) for p, s in cands]


def test_server_fuses_per_model_and_per_request(fused_server) -> None:
    from reranker.client import RerankerClient

    query, cands = _request()
    with RerankerClient(fused_server.target) as client:
        infos = {m.name: m for m in client.list_models()}
        assert infos["fused"].fusion.rule == "minmax" and infos["fused"].fusion.weight == pytest.approx(0.25)
        assert infos["plain"].fusion.rule == "none"
        fused = client.rerank(query, cands, model="fused")
        own = {r.index: r.model_score for r in fused.results}
        expected = FusionRule("minmax", 0.25).fuse([own[i] for i in range(len(cands))], [c[2] for c in cands])
        assert [r.index for r in fused.results] == sorted(range(len(cands)), key=lambda i: -expected[i])
        assert [r.score for r in fused.results] == pytest.approx([expected[r.index] for r in fused.results], abs=1e-6)
        plain = client.rerank(query, cands, model="plain")  # no rule: score is the model's, first stage ignored
        assert all(r.score == r.model_score for r in plain.results)
        assert {r.index: r.score for r in plain.results} == pytest.approx(own, abs=1e-5)
        override = client.rerank(query, cands, model="plain", fusion="rrf", fusion_weight=0.0)
        assert [r.index for r in override.results] == sorted(range(len(cands)), key=lambda i: -cands[i][2])
        alone = client.rerank(query, cands, model="fused", fusion="none")
        assert all(r.score == r.model_score for r in alone.results)
        weight_only = client.rerank(query, cands, model="fused", fusion_weight=1.0)  # rule stays the model's
        assert [r.index for r in weight_only.results] == [r.index for r in alone.results]
        with pytest.raises(grpc.RpcError) as err:
            client.rerank(query, [c[:2] for c in cands], model="fused")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "send first_stage_score on every candidate (0 of 6" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.rerank(query, cands, model="fused", fusion="mean")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "must be one of" in err.value.details()


def test_bad_fusion_in_config_is_refused(tmp_path) -> None:
    from reranker.server.config import load_config

    (tmp_path / "a.toml").write_text('[[models]]\nname = "a"\nartifact = "x"\nfusion = "minmax"\n')
    with pytest.raises(ConfigError, match="fusion must be a table"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text('[[models]]\nname = "a"\nartifact = "x"\nfusion = { rule = "minmax", w = 1 }\n')
    with pytest.raises(ConfigError, match="unknown keys \\['w'\\]"):
        load_config(tmp_path / "b.toml")


def test_evaluate_and_pick_fusion_use_the_same_rule(tmp_path, capsys) -> None:
    """`reranker evaluate --fusion` ranks as fuse_run does on the model's scores, and pick-fusion's grid ends
    are the first stage alone (weight 0) and the model alone (weight 1)."""
    folder = DataFolder.open(DL19_MINI)
    run = {q: c[:10] for q, c in folder.run("bm25").items()}
    model = {q: [(p, float(len(folder.passages[p]) % 7)) for p, _ in c] for q, c in run.items()}  # a fake model
    write_run(tmp_path / "model.run", model, tag="fake")
    scores = {(q, p): s for q, c in model.items() for p, s in c}
    rule = FusionRule("zscore", 0.3)
    assert (
        main(
            [
                "evaluate",
                "--model",
                "fake",
                "--data",
                str(DL19_MINI),
                "--depth",
                "10",
                "--fusion",
                "zscore",
                "--fusion-weight",
                "0.3",
                "--scores-from",
                str(tmp_path / "model.run"),
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    from reranker.data import read_run

    ranked = read_run(tmp_path / "e.run")
    expected = fuse_run(run, scores, rule)
    assert {q: [p for p, _ in c] for q, c in ranked.items()} == {q: [p for p, _ in c] for q, c in expected.items()}
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["fusion"]["rule"] == "zscore" and "without_fusion" in record and "first_stage" in record
    assert (
        main(
            [
                "pick-fusion",
                "--model",
                "fake",
                "--data",
                str(DL19_MINI),
                "--depth",
                "10",
                "--split",
                "standard",
                "--val-fraction",
                "0.9",
                "--rules",
                "minmax",
                "--step",
                "0.5",
                "--scores-from",
                str(tmp_path / "model.run"),
                "--out",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    picked = json.loads((tmp_path / "p.json").read_text())
    grid = {g["weight"]: g["ndcg@10"] for g in picked["grid"]}
    assert grid[0.0] == pytest.approx(picked["first_stage"]) and grid[1.0] == pytest.approx(picked["model_alone"])
    assert picked["picked"]["ndcg@10"] == max(grid.values())
    assert (
        main(
            [
                "evaluate",
                "--model",
                "fake",
                "--data",
                str(DL19_MINI),
                "--depth",
                "10",
                "--fusion-from",
                str(tmp_path / "p.json"),
                "--scores-from",
                str(tmp_path / "model.run"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--model",
                "fake",
                "--data",
                str(DL19_MINI),
                "--depth",
                "20",
                "--scores-from",
                str(tmp_path / "model.run"),
            ]
        )
        == 2
    )
    assert "lacks" in capsys.readouterr().err


def test_rerank_command_sends_first_stage_scores(fused_server, capsys) -> None:
    query, cands = _request(3)
    texts = [a for c in cands for a in ("--text", c[1])]
    first = ",".join(str(c[2]) for c in cands)
    assert (
        main(
            [
                "rerank",
                "--server",
                fused_server.target,
                "--query",
                query,
                *texts,
                "--model",
                "fused",
                "--first-stage-scores",
                first,
            ]
        )
        == 0
    )
    assert "(model " in capsys.readouterr().out  # fused scores differ from the model's own
    assert main(["rerank", "--server", fused_server.target, "--query", query, *texts, "--model", "fused"]) == 1
    assert "send first_stage_score on every candidate" in capsys.readouterr().err
    assert main(["rerank", "--server", fused_server.target, "--query", query, *texts, "--first-stage-scores", "1"]) == 2


@pytest.fixture(scope="module")
def shipped(tiny_exports, tmp_path_factory):
    """The tiny BERT-cat artifact with a fusion choice per first-stage kind in its config.json."""
    choices = {"dense": {"rule": "minmax", "weight": 0.25}, "sparse": {"rule": "rrf", "weight": 0.0}}
    dst = tmp_path_factory.mktemp("shipped") / "artifact"
    return copy_with_config(tiny_exports["bert_cat"][1], dst, "reranker-onnx", first_stage_fusion=choices)


def test_a_shipped_choice_per_first_stage_kind(shipped, tmp_path) -> None:
    """A request (gRPC and HTTP) or a served model naming the first stage's kind gets the model's
    shipped rule for it; an unknown or missing kind is refused with the kinds the model has."""
    from reranker.client import RerankerClient
    from reranker.engine import RuntimeConfig
    from reranker.server.config import ModelSpec, ServerConfig

    from .test_http import call
    from .test_server import launch

    with pytest.raises(ConfigError, match="first-stage kind must be one of bm25, dense, sparse"):
        from reranker.config import ModelConfig

        ModelConfig(arch="bert_cat", first_stage_fusion={"hybrid": {"rule": "rrf"}})
    with pytest.raises(ConfigError, match="without a fusion rule of its own"):
        ModelSpec("x", str(shipped), first_stage="dense", fusion=FusionRule("rrf", 0.5))
    models = (ModelSpec("plain", str(shipped)), ModelSpec("behind-dense", str(shipped), first_stage="dense"))
    cfg = ServerConfig(
        models=models, host="127.0.0.1", port=0, metrics_port=-1, http_port=0, runtime=RuntimeConfig(provider="cpu")
    )
    live = launch(cfg)
    try:
        query, cands = _request()
        with RerankerClient(live.target) as client:
            infos = {m.name: m for m in client.list_models()}
            assert list(infos["plain"].first_stages) == ["dense", "sparse"]
            assert infos["behind-dense"].fusion.rule == "minmax" and infos["behind-dense"].fusion.weight == pytest.approx(0.25)
            plain = client.rerank(query, cands, model="plain")
            own = [next(r.model_score for r in plain.results if r.index == i) for i in range(len(cands))]
            dense = FusionRule("minmax", 0.25).fuse(own, [c[2] for c in cands])
            for answer in (
                client.rerank(query, cands, model="plain", first_stage="dense"),
                client.rerank(query, cands, model="behind-dense"),
            ):
                assert {r.index: r.score for r in answer.results} == pytest.approx(dict(enumerate(dense)), abs=1e-6)
            weight = client.rerank(
                query, cands, model="plain", first_stage="dense", fusion_weight=1.0
            )  # the kind's rule, this weight
            assert {r.index: r.score for r in weight.results} == pytest.approx(
                dict(enumerate(FusionRule("minmax", 1.0).fuse(own, [c[2] for c in cands]))), abs=1e-6
            )
            sparse = client.rerank(query, cands, model="plain", first_stage="sparse")  # rrf, weight 0: the list's order
            assert [r.index for r in sparse.results] == sorted(range(len(cands)), key=lambda i: -cands[i][2])
            with pytest.raises(grpc.RpcError) as err:
                client.rerank(query, cands, model="plain", first_stage="bm25")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "ships no fusion choice for a bm25 first stage (it has: dense, sparse)" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                client.rerank(query, cands, model="plain", first_stage="hybrid")
            assert "first_stage must be one of bm25, dense, sparse" in err.value.details()
        docs = [{"text": t, "first_stage_score": s} for _, t, s in cands]
        status, body, _ = call(live, "/v2/rerank", {"model": "plain", "query": query, "documents": docs, "first_stage": "dense"})
        assert status == 200, body
        assert {r["index"]: r["relevance_score"] for r in body["results"]} == pytest.approx(dict(enumerate(dense)), abs=1e-6)
        status, listed, _ = call(live, "/v1/models", method="GET")
        assert status == 200 and {m["id"]: m["first_stages"] for m in listed["data"]}["plain"] == ["dense", "sparse"]
    finally:
        live.stop()


def test_evaluate_applies_the_shipped_choice_for_the_first_stage(tiny_exports, tmp_path, capsys) -> None:
    choices = {"dense": {"rule": "minmax", "weight": 0.25}}
    model = copy_with_config(tiny_exports["bert_cat"][0], tmp_path / "model", "reranker-checkpoint", first_stage_fusion=choices)
    common = ["evaluate", "--model", str(model), "--data", str(DL19_MINI), "--depth", "10"]
    assert main([*common, "--first-stage", "dense", "--json", str(tmp_path / "kind.json")]) == 0
    assert main([*common, "--fusion", "minmax", "--fusion-weight", "0.25", "--json", str(tmp_path / "rule.json")]) == 0
    kind, rule = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("kind", "rule"))
    assert kind["ndcg@10"] == rule["ndcg@10"] and kind["fusion"] == rule["fusion"]
    assert main([*common, "--first-stage", "sparse"]) == 2
    assert "ships no fusion choice for a sparse first stage (it has: dense)" in capsys.readouterr().err


def test_first_stage_lists_and_shipping_the_picks(tiny_exports, tmp_path) -> None:
    """Lists of two kinds over a pool (BM25 by bm25s; a tiny BERT-dot checkpoint standing in for the
    dense retriever), then the picks shipped into a model whose manifest still verifies."""
    import shutil

    from reranker.models.checkpoint import load_checkpoint
    from reranker.teachers.first_stage import first_stage_lists, ship_first_stage_fusion

    folder = DataFolder.open(DL19_MINI)
    queries = dict(sorted(folder.queries.items())[:3])
    dense = str(tiny_exports["bert_dot"][0])
    runs = first_stage_lists(queries, folder.passages, ["bm25", "dense"], depth=7, members={"dense": dense}, progress=False)
    assert set(runs) == {"bm25", "dense"}
    for run in runs.values():
        assert set(run) == set(queries)
        for ranked in run.values():
            assert len(ranked) == 7 and all(p in folder.passages for p, _ in ranked)
            assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert runs["bm25"] != runs["dense"]
    with pytest.raises(ConfigError, match="kinds must be among"):
        first_stage_lists(queries, folder.passages, ["hybrid"])
    model = tmp_path / "model"
    shutil.copytree(tiny_exports["bert_dot"][0], model)
    config = ship_first_stage_fusion(model, {"dense": FusionRule("rrf", 0.8)}, {"dense": {"queries": 3}})
    assert config.first_stage_fusion == {"dense": {"rule": "rrf", "weight": 0.8, "rrf_k": 60.0}}
    assert load_checkpoint(model).config.first_stage_fusion == config.first_stage_fusion  # checksums verified
    with pytest.raises(ConfigError, match="first-stage kind must be one of"):
        ship_first_stage_fusion(model, {"hybrid": FusionRule("rrf", 0.8)}, {})
