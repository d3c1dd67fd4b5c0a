"""Pure-Python metrics against hand computations, pytrec_eval and ir-measures (reranker.eval)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from reranker.data import DataFolder
from reranker.errors import ConfigError
from reranker.eval import (
    evaluate_per_query,
    evaluate_run,
    evaluate_with_ir_measures,
    ndcg_at_k,
    rank_candidates,
    recall_at_k,
    rel_level_for,
    rr_at_k,
)

MINI = Path(__file__).parent / "fixtures" / "dl19-mini"
DL19 = Path(__file__).resolve().parents[1] / "data" / "msmarco-passage" / "trec-dl-2019"


# ---------------------------------------------------------------------------------------------
# Hand-computed values


def test_ndcg_uses_linear_gain_and_all_judged_for_the_ideal() -> None:
    qrels_q = {"a": 3, "b": 2, "c": 0, "d": 1}
    ranking = ["c", "b", "x", "a"]
    dcg = 2 / math.log2(3) + 3 / math.log2(5)
    ideal = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(qrels_q, ranking, 10) == pytest.approx(dcg / ideal, abs=1e-15)
    assert ndcg_at_k(qrels_q, ranking, 2) == pytest.approx((2 / math.log2(3)) / (3 + 2 / math.log2(3)), abs=1e-15)
    assert ndcg_at_k(qrels_q, ["a", "b", "d"], 10) == pytest.approx(1.0)
    assert ndcg_at_k({"a": 0}, ["a"], 10) == 0.0


def test_rr_and_recall_respect_rel_level() -> None:
    qrels_q = {"a": 1, "b": 2, "c": 3, "z": 2}
    ranking = ["x", "a", "b", "c"]
    assert rr_at_k(qrels_q, ranking, 10, rel_level=1) == 0.5
    assert rr_at_k(qrels_q, ranking, 10, rel_level=2) == pytest.approx(1 / 3)
    assert rr_at_k(qrels_q, ranking, 2, rel_level=2) == 0.0
    assert recall_at_k(qrels_q, ranking, 100, rel_level=2) == pytest.approx(2 / 3)
    assert recall_at_k(qrels_q, ranking, 3, rel_level=1) == 0.5
    assert recall_at_k({"a": 1}, ranking, 100, rel_level=2) == 0.0
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        rr_at_k(qrels_q, ranking, 0)


def test_rel_level_for() -> None:
    assert rel_level_for({"q": {"a": 1, "b": 0}}) == 1
    assert rel_level_for({"q": {"a": 1}, "r": {"b": 3}}) == 2


def test_ties_are_broken_by_pid_descending() -> None:
    assert rank_candidates([("a", 1.0), ("c", 1.0), ("b", 2.0), ("b2", 1.0)]) == ["b", "c", "b2", "a"]
    qrels = {"q": {"a": 1}}
    result = evaluate_run(qrels, {"q": [("a", 1.0), ("b", 1.0)]})
    assert result["mrr@10"] == 0.5


def test_mean_is_over_judged_queries_in_the_run_unless_complete() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": [("a", 1.0)], "q3": [("c", 1.0)], "q9": [("z", 1.0)]}
    part = evaluate_run(qrels, run)
    assert part == {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@100": 0.5, "queries": 2.0}
    full = evaluate_run(qrels, run, complete=True)
    assert full["queries"] == 3.0 and full["mrr@10"] == pytest.approx(1 / 3)
    assert evaluate_run({}, run) == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0, "queries": 0.0}
    with pytest.raises(ConfigError, match="lists a passage twice"):
        evaluate_run(qrels, {"q1": [("a", 1.0), ("a", 0.5)]})


# ---------------------------------------------------------------------------------------------
# Against pytrec_eval and ir-measures


def _pytrec(qrels, run, rel_level: int) -> dict[str, dict[str, float]]:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}, relevance_level=rel_level)
    return evaluator.evaluate({q: {pid: float(s) for pid, s in c} for q, c in run.items()})


def _assert_same_as_pytrec(qrels, run) -> None:
    level = rel_level_for(qrels)
    ours = evaluate_per_query(qrels, run)
    theirs = _pytrec(qrels, run, level)
    assert set(ours) == set(theirs)
    for qid, values in theirs.items():
        assert ours[qid]["ndcg@10"] == pytest.approx(values["ndcg_cut_10"], abs=1e-12), qid
        assert ours[qid]["recall@100"] == pytest.approx(values["recall_100"], abs=1e-12), qid


def _assert_same_as_ir_measures(qrels, run, *, complete: bool = False, break_ties: bool = True) -> dict[str, float]:
    pytest.importorskip("ir_measures")
    ours = evaluate_run(qrels, run, complete=complete)
    theirs = evaluate_with_ir_measures(qrels, run, complete=complete, break_ties=break_ties)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    return ours


def test_fixture_equals_ir_measures_and_pytrec_eval() -> None:
    folder = DataFolder.open(MINI)
    run = folder.run("bm25")
    ours = _assert_same_as_ir_measures(folder.qrels, run)
    assert ours["queries"] == 3.0 and 0.0 < ours["ndcg@10"] < 1.0
    _assert_same_as_ir_measures(folder.qrels, run, break_ties=False)
    _assert_same_as_pytrec(folder.qrels, run)


def test_fixture_with_every_score_tied_matches_trec_eval_order() -> None:
    folder = DataFolder.open(MINI)
    tied = {q: [(pid, 1.0) for pid, _ in ranking] for q, ranking in folder.run("bm25").items()}
    _assert_same_as_pytrec(folder.qrels, tied)
    ours = _assert_same_as_ir_measures(folder.qrels, tied)
    assert ours != evaluate_run(folder.qrels, folder.run("bm25"))


def test_missing_query_complete_equals_ir_measures() -> None:
    folder = DataFolder.open(MINI)
    run = folder.run("bm25")
    del run["87452"]
    assert _assert_same_as_ir_measures(folder.qrels, run)["queries"] == 2.0
    assert _assert_same_as_ir_measures(folder.qrels, run, complete=True)["queries"] == 3.0


def test_dl19_bm25_reference_numbers() -> None:
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    assert rel_level_for(folder.qrels) == 2
    ours = _assert_same_as_ir_measures(folder.qrels, run, break_ties=False)
    assert ours["queries"] == 43.0
    assert abs(ours["ndcg@10"] - 0.506) < 0.0005
    theirs = evaluate_with_ir_measures(folder.qrels, run, 2, break_ties=False)
    assert abs(theirs["ndcg@10"] - 0.506) < 0.0005
    _assert_same_as_pytrec(folder.qrels, run)


def test_dl19_tasb_with_score_ties_matches_pytrec_eval() -> None:
    folder = DataFolder.open(DL19)
    run = folder.run("tasb")
    scores = [s for ranking in run.values() for s in (x for _, x in ranking)]
    assert len(scores) > len(set(scores)), "tasb.run is expected to contain tied scores"
    _assert_same_as_pytrec(folder.qrels, run)
    assert abs(evaluate_run(folder.qrels, run)["ndcg@10"] - 0.721) < 0.0005


def test_ir_measures_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ir_measures", None)
    with pytest.raises(ImportError, match=r"pip install 'reranker\[train\]'"):
        evaluate_with_ir_measures({"q": {"a": 1}}, {"q": [("a", 1.0)]})
