"""Training triples, teacher-score files and the validation split (reranker.data.triples)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.data import (
    Collection,
    ScoredTriple,
    Triple,
    all_pairs_triples,
    labelled_triples,
    read_qrels,
    read_run,
    read_scores,
    read_training_file,
    read_triples,
    split_validation,
    write_scores,
    write_triples,
)
from reranker.errors import ConfigError, DataFormatError

MINI = Path(__file__).parent / "fixtures" / "dl19-mini"


@pytest.fixture(scope="module")
def mini() -> Collection:
    return Collection.open([MINI])


def _grade_pairs(grades: list[int]) -> int:
    """Number of (higher, lower) ordered pairs with the higher grade >= 1."""
    counts = Counter(grades)
    return sum(counts[g] * sum(n for h, n in counts.items() if h < g) for g in counts if g >= 1)


# ---------------------------------------------------------------------------------------------
# labelled_triples


def test_labelled_triples_pairs_only_strictly_lower_grades(mini: Collection) -> None:
    triples = labelled_triples(mini, "bm25", max_per_query=None, seed=0)
    qrels = read_qrels(MINI / "qrels.txt")
    run = read_run(MINI / "bm25.run")
    pairs = Counter()
    for t in triples:
        gp, gn = qrels[t.qid].get(t.pos, 0), qrels[t.qid].get(t.neg, 0)
        assert gp >= 1 and gn < gp
        pairs[(gp, gn)] += 1
    assert pairs[(3, 1)] > 0 and pairs[(2, 1)] > 0 and pairs[(1, 0)] > 0
    assert not any(gp == gn for gp, gn in pairs)
    for qid in qrels:
        pool = set(qrels[qid]) | {pid for pid, _ in run[qid]}
        expected = _grade_pairs([qrels[qid].get(pid, 0) for pid in pool])
        assert sum(1 for t in triples if t.qid == qid) == expected
    unjudged = {pid for pid, _ in run["207786"]} - set(qrels["207786"])
    assert unjudged and unjudged <= {t.neg for t in triples if t.qid == "207786"}
    assert triples == sorted(triples, key=lambda t: (t.qid, t.pos, t.neg))
    assert len(set(triples)) == len(triples)


def test_labelled_triples_skip_passages_without_text(tmp_path: Path) -> None:
    folder = shutil.copytree(MINI, tmp_path / "mini")
    qrels = read_qrels(MINI / "qrels.txt")
    in_run = {line.split()[2] for line in (MINI / "bm25.run").read_text().splitlines()}
    dropped = next(pid for pid, g in qrels["87452"].items() if g == 3 and pid not in in_run)
    lines = (MINI / "passages.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "passages.tsv").write_text("".join(x for x in lines if not x.startswith(f"{dropped}\t")), encoding="utf-8")
    triples = labelled_triples(Collection.open([folder]), "bm25", max_per_query=None, seed=0)
    assert triples
    assert all(dropped not in (t.pos, t.neg) for t in triples)


def test_labelled_triples_sampling_is_deterministic_and_per_query(mini: Collection, tmp_path: Path) -> None:
    full = labelled_triples(mini, "bm25", max_per_query=None, seed=0)
    a = labelled_triples(mini, "bm25", max_per_query=25, seed=1)
    b = labelled_triples(mini, "bm25", max_per_query=25, seed=1)
    c = labelled_triples(mini, "bm25", max_per_query=25, seed=2)
    assert a == b and a != c
    assert Counter(t.qid for t in a) == dict.fromkeys(("146187", "207786", "87452"), 25)
    assert set(a) <= set(full)
    other = tmp_path / "other"
    other.mkdir()
    (other / "queries.tsv").write_text("x\tunrelated query\n")
    (other / "passages.tsv").write_text("xp\tsome text\nxn\tother text\n")
    (other / "qrels.txt").write_text("x 0 xp 1\n")
    (other / "bm25.run").write_text("x Q0 xn 1 2.0 t\nx Q0 xp 2 1.0 t\n")
    forward = labelled_triples(Collection.open([MINI, other]), "bm25", max_per_query=25, seed=1)
    backward = labelled_triples(Collection.open([other, MINI]), "bm25", max_per_query=25, seed=1)
    assert forward == backward
    assert [t for t in forward if t.qid != "x"] == a
    with pytest.raises(ConfigError, match="max_per_query"):
        labelled_triples(mini, "bm25", max_per_query=0, seed=1)


# ---------------------------------------------------------------------------------------------
# all_pairs_triples


@pytest.mark.parametrize("depth", [None, 10, 1])
def test_all_pairs_count_and_orientation(mini: Collection, depth: int | None) -> None:
    triples = all_pairs_triples(mini, "bm25", depth=depth, max_per_query=None, seed=0)
    run = read_run(MINI / "bm25.run")
    n = 20 if depth is None else depth
    assert Counter(t.qid for t in triples) == ({q: n * (n - 1) // 2 for q in run} if n > 1 else {})
    for t in triples:
        ranked = [pid for pid, _ in run[t.qid]]
        assert ranked.index(t.pos) < ranked.index(t.neg) < n


def test_all_pairs_sampling(mini: Collection) -> None:
    a = all_pairs_triples(mini, "bm25", depth=None, max_per_query=7, seed=5)
    assert a == all_pairs_triples(mini, "bm25", depth=None, max_per_query=7, seed=5)
    assert Counter(t.qid for t in a) == dict.fromkeys(("146187", "207786", "87452"), 7)
    assert a != all_pairs_triples(mini, "bm25", depth=None, max_per_query=7, seed=6)


# ---------------------------------------------------------------------------------------------
# Files

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.tuples(finite, finite), min_size=1, max_size=8))
def test_scores_round_trip_exact(tmp_path_factory: pytest.TempPathFactory, scores: list[tuple[float, float]]) -> None:
    path = tmp_path_factory.mktemp("scores") / "scores.tsv"
    scored = [ScoredTriple(f"q{i}", f"p{i}", f"n{i}", pos, neg) for i, (pos, neg) in enumerate(scores)]
    write_scores(path, scored)
    back = read_scores(path)
    assert back == scored
    assert all(str(a.pos_score) == str(b.pos_score) for a, b in zip(back, scored, strict=True))  # -0.0 too
    assert read_training_file(path) == scored


def test_score_file_layout_matches_the_paper(tmp_path: Path) -> None:
    path = write_scores(tmp_path / "s.tsv", [ScoredTriple("q1", "p+", "p-", 0.1 + 0.2, -1 / 3)])
    assert path.read_text() == "0.30000000000000004\t-0.3333333333333333\tq1\tp+\tp-\n"
    assert ScoredTriple("q", "a", "b", 2.5, -1.0).margin == 3.5


def test_triples_round_trip(tmp_path: Path, mini: Collection) -> None:
    triples = all_pairs_triples(mini, "bm25", depth=5, max_per_query=None, seed=0)
    path = write_triples(tmp_path / "t.tsv", triples)
    assert read_triples(path) == triples
    back = read_training_file(path)
    assert back == triples and all(type(t) is Triple for t in back)
    assert path.read_text().splitlines()[0] == "\t".join((triples[0].qid, triples[0].pos, triples[0].neg))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("q\ta\tb\n1.0\t2.0\tq\ta\tb\n", 2, "found 5 tab-separated columns, expected 3 like line 1"),
        ("1.0\t2.0\tq\ta\tb\nq\ta\tb\n", 2, "found 3 tab-separated columns, expected 5 like line 1"),
        ("q\ta\tb\tc\n", 1, "found 4 tab-separated columns; a training file has 3"),
        ("one\t2.0\tq\ta\tb\n", 1, "pos_score 'one' is not a number"),
        ("q\ta\ta\n", 1, "positive and negative passage are both a"),
    ],
)
def test_bad_training_files(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_training_file(path)
    assert info.value.line == line and message in str(info.value)


def test_read_triples_rejects_score_file_and_empty_training_file(tmp_path: Path) -> None:
    path = write_scores(tmp_path / "s.tsv", [ScoredTriple("q", "a", "b", 1.0, 0.0)])
    with pytest.raises(DataFormatError, match="found 5 tab-separated columns, expected 3"):
        read_triples(path)
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert read_triples(empty) == []
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_training_file(empty)


# ---------------------------------------------------------------------------------------------
# split_validation


def test_split_validation_deterministic_and_disjoint() -> None:
    qids = [str(i) for i in range(1000, 1600)]
    train, val = split_validation(qids, 0.1, seed=13)
    assert (train, val) == split_validation(list(reversed(qids)), 0.1, seed=13)
    assert not train & val and train | val == set(qids)
    assert len(val) == 60
    _, other_val = split_validation(qids, 0.1, seed=14)
    assert other_val != val and len(other_val) == 60
    assert split_validation(qids, 0.0, seed=13) == (set(qids), set())
    assert split_validation(["only"], 0.9, seed=0) == ({"only"}, set())


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, float("nan"), True])
def test_split_validation_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match=r"validation fraction must be in \[0, 1\)"):
        split_validation(["a", "b"], fraction, seed=0)


def test_sampling_differs_between_queries_with_the_same_candidates(tmp_path: Path) -> None:
    folder = tmp_path / "twins"
    folder.mkdir()
    (folder / "queries.tsv").write_text("a\tfirst query\nb\tsecond query\n")
    (folder / "passages.tsv").write_text("".join(f"p{i}\ttext {i}\n" for i in range(6)))
    (folder / "bm25.run").write_text("".join(f"{q} Q0 p{i} {i + 1} {10 - i}.0 t\n" for q in "ab" for i in range(6)))
    triples = all_pairs_triples(Collection.open(folder), "bm25", depth=None, max_per_query=5, seed=0)
    picked = {q: {(t.pos, t.neg) for t in triples if t.qid == q} for q in "ab"}
    assert len(picked["a"]) == len(picked["b"]) == 5
    assert picked["a"] != picked["b"]  # the sample is seeded from (seed, qid), not from seed alone
