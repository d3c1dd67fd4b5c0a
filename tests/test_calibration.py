"""Calibrated relevance: Platt scaling fitted and measured offline, served beside the score (gRPC
and HTTP), and min_relevance; bad inputs refused with the reason."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from reranker.calibration import Calibration
from reranker.errors import ConfigError, InvalidInputError
from reranker.eval.calibration import fit_platt, judged, measure

from .conftest import DL19_MINI, copy_with_config


def test_the_mapping_and_its_refusals() -> None:
    c = Calibration(2.0, -1.0, per_query_token=True)
    p = c.relevance(np.array([0.0, 2.0, 8.0]), query_tokens=4)  # x = score / 4
    assert p == pytest.approx([1 / (1 + math.e), 0.5, 1 / (1 + math.exp(-3))])
    assert Calibration.from_dict(c.to_dict()) == c and Calibration.from_dict(None) is None
    with pytest.raises(ConfigError, match="finite a > 0"):
        Calibration(-1.0, 0.0)
    with pytest.raises(ConfigError, match="method: 'platt'"):
        Calibration.from_dict({"method": "isotonic", "a": 1, "b": 0})
    with pytest.raises(ConfigError, match="numbers a and b"):
        Calibration.from_dict({"a": "x", "b": 0})


def test_fit_recovers_platt_and_measures_calibration() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x - 0.5)))).astype(float)
    candidates = {"q": [(f"p{i}", 0.0) for i in range(4000)]}
    scores = {("q", f"p{i}"): float(v) for i, v in enumerate(x)}
    graded = {"q": {f"p{i}": 2 * int(v) for i, v in enumerate(y)}}
    data = judged(candidates, scores, graded, 2, lambda q: 1)
    cal = fit_platt(data, per_query_token=False)
    assert cal.a == pytest.approx(1.5, abs=0.15) and cal.b == pytest.approx(-0.5, abs=0.15)
    good, bad = measure(cal, data), measure(Calibration(1.5, 2.0), data)
    assert good["ece"] < 0.03 < 0.1 < bad["ece"] and good["brier"] < bad["brier"]
    sparse = {"q": {f"p{i}": 1 for i, v in enumerate(y) if v}}  # MS MARCO: only the relevant listed
    assert len(judged(candidates, scores, sparse, 1, lambda q: 1).labels) == 4000  # unjudged count as 0
    with pytest.raises(InvalidInputError, match="both labels"):
        judged(candidates, scores, {"q": {"p0": 2}}, 2, lambda q: 1)


@pytest.fixture(scope="module")
def calibrated(tiny_exports, tmp_path_factory):
    """The tiny BERT-cat artifact with a calibration in its config.json."""
    cal = {"method": "platt", "a": 3.0, "b": 0.1, "per_query_token": False}
    dst = tmp_path_factory.mktemp("calibrated") / "artifact"
    return copy_with_config(tiny_exports["bert_cat"][1], dst, "reranker-onnx", calibration=cal)


def test_served_relevance_and_min_relevance(calibrated, tiny_exports) -> None:
    from reranker.client import RerankerClient
    from reranker.data import DataFolder
    from reranker.engine import RuntimeConfig
    from reranker.server.config import ModelSpec, ServerConfig

    from .test_http import call
    from .test_server import launch

    folder = DataFolder.open(DL19_MINI)
    qid = min(folder.queries, key=lambda q: len(folder.queries[q]))
    query = folder.queries[qid]
    cands = [(p, folder.passages[p]) for p, _ in folder.run("bm25")[qid][:6]]
    models = (ModelSpec("cal", str(calibrated)), ModelSpec("raw", str(tiny_exports["bert_cat"][1])))
    cfg = ServerConfig(
        models=models, host="127.0.0.1", port=0, metrics_port=-1, http_port=0, runtime=RuntimeConfig(provider="cpu")
    )
    live = launch(cfg)
    try:
        with RerankerClient(live.target) as client:
            assert {m.name: m.calibrated for m in client.list_models()} == {"cal": True, "raw": False}
            answer = client.rerank(query, cands, model="cal")
            for r in answer.results:
                assert r.HasField("relevance")
                assert r.relevance == pytest.approx(1 / (1 + math.exp(-(3.0 * r.model_score + 0.1))), abs=1e-5)
            assert not any(r.HasField("relevance") for r in client.rerank(query, cands, model="raw").results)
            middle = sorted(r.relevance for r in answer.results)[3]
            from reranker.v1 import reranker_pb2 as pb

            kept = client.rerank(query, cands, model="cal", min_relevance=middle)
            assert len(kept.results) + kept.below_min_relevance == len(cands) and kept.below_min_relevance >= 1
            assert all(r.relevance >= middle - 1e-6 for r in kept.results)
            for model, value, reason in (("cal", 1.5, "must be in [0, 1]"), ("raw", 0.5, "has no calibration")):
                bad = pb.RerankRequest(query=query, model=model, min_relevance=value)
                bad.candidates.add(id="x", text="a flea")
                with pytest.raises(grpc.RpcError) as err:
                    client.stub.Rerank(bad, timeout=30)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason in err.value.details()
        docs = [t for _, t in cands]
        status, body, _ = call(live, "/v1/rerank", {"model": "cal", "query": query, "documents": docs, "min_relevance": middle})
        assert status == 200, body
        assert all(0.0 <= r["relevance_score"] <= 1.0 and r["relevance_score"] == r["relevance"] for r in body["results"])
        assert len(body["results"]) + body["below_min_relevance"] == len(docs)
    finally:
        live.stop()
