"""Ensemble teachers (reranker.eval.ensemble and `reranker ensemble`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reranker.cli import main
from reranker.data import ScoredTriple, read_run, read_scores, write_run, write_scores
from reranker.errors import ConfigError
from reranker.eval.ensemble import combine, mean_query_std, pick_weights, weight_grid, zscore


def test_zscore_is_per_query_and_handles_constant_queries() -> None:
    z = zscore({("q1", "a"): 1.0, ("q1", "b"): 3.0, ("q2", "a"): 100.0, ("q2", "b"): 100.0})
    assert z[("q1", "a")] == pytest.approx(-1.0) and z[("q1", "b")] == pytest.approx(1.0)
    assert z[("q2", "a")] == 0.0 and z[("q2", "b")] == 0.0


def test_fuse_puts_members_of_different_scales_on_equal_footing() -> None:
    big = {("q", "a"): 1000.0, ("q", "b"): 0.0, ("q", "c"): 500.0}
    small = {("q", "a"): 0.0, ("q", "b"): 0.1, ("q", "c"): 0.05}
    fused = combine([big, small])  # opposite orders, same spread after z-scoring: a tie
    assert fused[("q", "a")] == pytest.approx(fused[("q", "b")])
    raw = combine([big, small], normalize="none")
    assert raw[("q", "a")] > raw[("q", "b")]
    scaled = combine([big], scale=2.0)
    assert scaled[("q", "a")] == pytest.approx(2 * zscore(big)[("q", "a")])
    assert mean_query_std(combine([big], scale=3.0)) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"weights": [1.0]}, "1 weights for 2 members"),
        ({"weights": [0.0, 0.0]}, "not all 0"),
        ({"weights": [1.0, math.nan]}, "finite"),
        ({"scale": 0.0}, "scale"),
        ({"normalize": "minmax"}, "normalize"),
    ],
)
def test_fuse_rejects_bad_settings(kwargs: dict, message: str) -> None:
    members = [{("q", "a"): 1.0, ("q", "b"): 0.0}] * 2
    with pytest.raises(ConfigError, match=message):
        combine(members, **kwargs)


def test_fuse_needs_the_same_pairs_in_every_member() -> None:
    with pytest.raises(ConfigError, match="same"):
        combine([{("q", "a"): 1.0}, {("q", "b"): 1.0}])


def test_weight_grid_covers_the_simplex() -> None:
    grid = weight_grid(3, 0.5)
    assert len(grid) == 6 and all(sum(w) == pytest.approx(1.0) for w in grid)
    with pytest.raises(ConfigError, match="divide 1"):
        weight_grid(2, 0.3)


def test_pick_weights_prefers_the_member_that_ranks_the_relevant_passage_first() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    good = {("q1", "a"): 2.0, ("q1", "b"): 1.0, ("q2", "a"): 1.0, ("q2", "b"): 2.0}
    bad = {k: -v for k, v in good.items()}
    ranked = pick_weights([bad, good], qrels, {"q1", "q2"}, step=0.5)
    assert ranked[0] == ((0.0, 1.0), 1.0)
    assert ranked[-1][0] == (1.0, 0.0)


def test_cli_fuses_score_files_and_runs(tmp_path: Path) -> None:
    triples = [ScoredTriple("q", "a", "b", 3.0, 1.0), ScoredTriple("q", "a", "c", 3.0, 2.0)]
    write_scores(tmp_path / "t1.tsv", triples)
    write_scores(tmp_path / "t2.tsv", [ScoredTriple(t.qid, t.pos, t.neg, -t.pos_score, -t.neg_score) for t in triples])
    assert (
        main(
            [
                "ensemble",
                "--in",
                str(tmp_path / "t1.tsv"),
                "--in",
                str(tmp_path / "t2.tsv"),
                "--weight",
                "3",
                "--weight",
                "1",
                "--out",
                str(tmp_path / "f.tsv"),
            ]
        )
        == 0
    )
    fused = read_scores(tmp_path / "f.tsv")
    assert [(t.pos, t.neg) for t in fused] == [("a", "b"), ("a", "c")]
    assert fused[0].pos_score > fused[0].neg_score  # the first member, weight 3, wins

    write_run(tmp_path / "r1.run", {"q": [("a", 3.0), ("b", 1.0)]}, tag="x")
    write_run(tmp_path / "r2.run", {"q": [("a", 10.0), ("b", 30.0)]}, tag="y")
    assert (
        main(
            [
                "ensemble",
                "--in",
                str(tmp_path / "r1.run"),
                "--in",
                str(tmp_path / "r2.run"),
                "--weight",
                "1",
                "--weight",
                "2",
                "--out",
                str(tmp_path / "f.run"),
            ]
        )
        == 0
    )
    assert [pid for pid, _ in read_run(tmp_path / "f.run")["q"]] == ["b", "a"]
    assert (
        main(
            [
                "ensemble",
                "--in",
                str(tmp_path / "r1.run"),
                "--in",
                str(tmp_path / "r2.run"),
                "--weights-from",
                str(tmp_path / "f.tsv.ensemble.json"),
                "--out",
                str(tmp_path / "g.run"),
            ]
        )
        == 0
    )
    assert [pid for pid, _ in read_run(tmp_path / "g.run")["q"]] == ["a", "b"]  # weights 3:1 reused


def test_cli_refuses_mixed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_scores(tmp_path / "t.tsv", [ScoredTriple("q", "a", "b", 3.0, 1.0)])
    write_run(tmp_path / "r.run", {"q": [("a", 3.0), ("b", 1.0)]}, tag="x")
    assert main(["ensemble", "--in", str(tmp_path / "t.tsv"), "--in", str(tmp_path / "r.run"), "--out", str(tmp_path / "o")]) != 0
    assert "not a mix" in capsys.readouterr().err
