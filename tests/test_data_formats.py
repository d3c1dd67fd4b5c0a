"""Readers, writers, data folders and collections (reranker.data.formats)."""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import pytest

from reranker.data import (
    Collection,
    DataFolder,
    read_passages,
    read_qrels,
    read_queries,
    read_run,
    write_run,
)
from reranker.errors import ConfigError, DataFormatError, NotFoundError

MINI = Path(__file__).parent / "fixtures" / "dl19-mini"
MINI_QIDS = ["146187", "207786", "87452"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------------------------------
# Readers on the fixture


def test_read_queries_fixture() -> None:
    queries = read_queries(MINI / "queries.tsv")
    assert list(queries) == MINI_QIDS
    assert queries["207786"] == "how are some sharks warm blooded"


def test_read_passages_fixture_covers_every_named_pid() -> None:
    passages = read_passages(MINI / "passages.tsv")
    named = {line.split()[2] for name in ("qrels.txt", "bm25.run") for line in _lines(MINI / name)}
    assert set(passages) == named
    assert all(text.strip() for text in passages.values())


def test_read_qrels_fixture_keeps_file_order_and_int_grades() -> None:
    qrels = read_qrels(MINI / "qrels.txt")
    raw = [line.split() for line in _lines(MINI / "qrels.txt")]
    assert sum(len(j) for j in qrels.values()) == len(raw)
    assert list(qrels["87452"]) == [r[2] for r in raw if r[0] == "87452"]
    assert {g for j in qrels.values() for g in j.values()} == {0, 1, 2, 3}
    assert all(isinstance(g, int) for j in qrels.values() for g in j.values())


def test_read_run_fixture_sorted_by_rank_even_if_file_is_shuffled(tmp_path: Path) -> None:
    lines = _lines(MINI / "bm25.run")
    expected = {q: [r.split()[2] for r in lines if r.split()[0] == q] for q in MINI_QIDS}
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    run = read_run(_write(tmp_path / "shuffled.run", "\n".join(shuffled) + "\n"))
    assert {q: [pid for pid, _ in r] for q, r in run.items()} == expected
    first = lines[0].split()
    assert run[first[0]][0] == (first[2], float(first[4]))


def test_read_run_equal_ranks_ordered_by_score(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.run", "q Q0 a 1 1.0 x\nq Q0 b 1 3.0 x\nq Q0 c 2 9.0 x\n")
    assert read_run(path) == {"q": [("b", 3.0), ("a", 1.0), ("c", 9.0)]}


def test_readers_accept_gzip_crlf_and_blank_lines(tmp_path: Path) -> None:
    gz = tmp_path / "passages.tsv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.write("p1\tfirst text\r\n\np2\tsecond\n")
    assert read_passages(gz) == {"p1": "first text", "p2": "second"}


# ---------------------------------------------------------------------------------------------
# Readers on bad files


BAD_FILES = [
    (read_queries, "1\thello\n2 no tab here\n", 2, "expected 2 tab-separated columns"),
    (read_queries, "1\thello\n1\tagain\n", 2, "duplicate qid 1 (first on line 1)"),
    (read_queries, "1\thello\n2\t  \n", 2, "query text of qid 2 is empty"),
    (read_passages, "p1\tok\np2\t\n", 2, "passage text of pid p2 is empty"),
    (read_passages, "p1\tok\np1\tok\n", 2, "duplicate pid p1"),
    (read_passages, "p1\tok\textra\n", 1, "expected 2 tab-separated columns (pid<TAB>text), found 3"),
    (read_qrels, "1 0 p1 1\n1 0 p2 1.5\n", 2, "grade '1.5' is not an integer"),
    (read_qrels, "1 0 p1 1\n1 0 p2\n", 2, "expected 4 whitespace-separated columns"),
    (read_qrels, "1 0 p1 1\n1 0 p1 2\n", 2, "duplicate judgment of pid p1 for qid 1"),
    (read_run, "1 Q0 p1 1 2.0 t\n1 Q0 p2 2 1.0\n", 2, "expected 6 whitespace-separated columns"),
    (read_run, "1 Q0 p1 first 2.0 t\n", 1, "rank 'first' is not an integer"),
    (read_run, "1 Q0 p1 1 high t\n", 1, "score 'high' is not a number"),
    (read_run, "1 Q0 p1 1 2.0 t\n1 Q0 p1 2 1.0 t\n", 2, "pid p1 listed twice for qid 1 (first on line 1)"),
]


@pytest.mark.parametrize(("reader", "text", "line", "message"), BAD_FILES)
def test_bad_files_raise_with_line_and_reason(tmp_path: Path, reader, text: str, line: int, message: str) -> None:
    path = _write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError) as info:
        reader(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    assert message in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_non_utf8_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_bytes(b"1\tcaf\xe9\n")
    with pytest.raises(DataFormatError, match="not valid UTF-8"):
        read_queries(path)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        read_queries(tmp_path / "absent.tsv")


# ---------------------------------------------------------------------------------------------
# write_run


def test_write_run_round_trip_exact_floats_and_stable_ties(tmp_path: Path) -> None:
    rng = random.Random(3)
    run = {
        "q1": [(f"p{i}", rng.uniform(-5, 5)) for i in range(30)] + [("tie_b", 0.1 + 0.2), ("tie_a", 0.1 + 0.2)],
        "q2": [("x", 1 / 3), ("y", 1e-300), ("z", -2.5e17)],
    }
    path = write_run(tmp_path / "out" / "model.run", run, tag="mymodel")
    back = read_run(path)
    for qid, ranking in run.items():
        expected = sorted(ranking, key=lambda c: -c[1])  # stable: tie_b stays before tie_a
        assert back[qid] == expected
    rows = [line.split() for line in _lines(path)]
    assert [int(r[3]) for r in rows if r[0] == "q1"] == list(range(1, 33))
    assert {r[1] for r in rows} == {"Q0"} and {r[5] for r in rows} == {"mymodel"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.run"]  # no temp file left


def test_write_run_is_atomic_on_failure(tmp_path: Path) -> None:
    path = write_run(tmp_path / "a.run", {"q": [("p", 1.0)]}, tag="t")
    before = path.read_text()
    with pytest.raises(ConfigError, match="scores must be finite"):
        write_run(path, {"q": [("p", float("nan"))]}, tag="t")
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.run"]


@pytest.mark.parametrize(
    ("run", "tag", "message"),
    [
        ({"q": [("p", 1.0)]}, "two words", "run tag"),
        ({"q": [("p", 1.0), ("p", 0.5)]}, "t", "listed twice"),
        ({"q 1": [("p", 1.0)]}, "t", "qid 'q 1'"),
    ],
)
def test_write_run_rejects_bad_arguments(tmp_path: Path, run, tag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_run(tmp_path / "x.run", run, tag=tag)


# ---------------------------------------------------------------------------------------------
# DataFolder


def make_folder(
    root: Path,
    name: str,
    queries: dict[str, str],
    passages: dict[str, str] | None = None,
    qrels: list[str] | None = None,
    runs: dict[str, list[str]] | None = None,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    _write(folder / "queries.tsv", "".join(f"{q}\t{t}\n" for q, t in queries.items()))
    if passages is not None:
        _write(folder / "passages.tsv", "".join(f"{p}\t{t}\n" for p, t in passages.items()))
    if qrels is not None:
        _write(folder / "qrels.txt", "".join(line + "\n" for line in qrels))
    for run_name, lines in (runs or {}).items():
        _write(folder / f"{run_name}.run", "".join(line + "\n" for line in lines))
    return folder


def test_data_folder_fixture() -> None:
    folder = DataFolder.open(MINI)
    assert folder.name == "dl19-mini"
    assert folder.run_names() == ["bm25"]
    assert set(folder.queries) == set(MINI_QIDS)
    assert len(folder.passages) == 421
    run = folder.run("bm25")
    assert {q: len(r) for q, r in run.items()} == dict.fromkeys(MINI_QIDS, 20)
    run["146187"].clear()  # callers get copies; the cache is unharmed
    assert len(folder.run("bm25")["146187"]) == 20


def test_qrels_pseudo_run_is_judged_pool_in_file_order() -> None:
    folder = DataFolder.open(MINI)
    pool = folder.run("qrels")
    raw = [line.split() for line in _lines(MINI / "qrels.txt")]
    assert pool["207786"] == [(r[2], 0.0) for r in raw if r[0] == "207786"]
    assert set(pool) == set(MINI_QIDS)


def test_unknown_run_lists_available_runs_and_qrels() -> None:
    with pytest.raises(NotFoundError) as info:
        DataFolder.open(MINI).run("tasb")
    assert "no run 'tasb'" in str(info.value) and "available: bm25, qrels" in str(info.value)


def test_resolve_run_takes_first_existing_name(tmp_path: Path) -> None:
    folder = DataFolder.open(MINI)
    assert folder.resolve_run("tasb, bm25,qrels") == "bm25"
    assert folder.resolve_run("splade,qrels") == "qrels"
    with pytest.raises(NotFoundError, match="none of the runs tasb, splade exists here; available: bm25, qrels"):
        folder.resolve_run("tasb,splade")
    with pytest.raises(ConfigError, match="names no run"):
        folder.resolve_run(" , ")
    bare = DataFolder.open(make_folder(tmp_path, "bare", {"1": "a query"}))
    assert bare.passages == {} and bare.qrels == {} and bare.run_names() == []
    with pytest.raises(NotFoundError, match="available: none"):
        bare.resolve_run("qrels")


def test_open_missing_folder_or_queries(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no such data folder; a data folder holds queries\.tsv"):
        DataFolder.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"no queries\.tsv here; a data folder holds queries\.tsv"):
        DataFolder.open(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# Collection


def test_collection_merges_folders(tmp_path: Path) -> None:
    shared_query = read_queries(MINI / "queries.tsv")["146187"]
    other = make_folder(
        tmp_path,
        "other",
        {"9": "another query", "146187": shared_query},
        passages={"x1": "text one", "x2": "text two"},
        qrels=["9 0 x1 1", "146187 0 x9 2"],
        runs={"bm25": ["9 Q0 x2 1 5.0 t", "9 Q0 x1 2 4.0 t"]},
    )
    mini = shutil.copytree(MINI, tmp_path / "mini")
    (mini / "bm25.run").write_text("".join(line + "\n" for line in _lines(MINI / "bm25.run") if not line.startswith("146187 ")))
    coll = Collection.open([mini, other])
    assert coll.names == ["mini", "other"]
    assert set(coll.queries) == set(MINI_QIDS) | {"9"}
    assert coll.passages["x2"] == "text two" and len(coll.passages) == 423
    assert coll.qrels["146187"]["x9"] == 2
    assert len(coll.qrels["146187"]) == len(read_qrels(MINI / "qrels.txt")["146187"]) + 1
    cands = coll.candidates("bm25", depth=5)
    assert cands["9"] == [("x2", 5.0), ("x1", 4.0)]
    assert len(cands["87452"]) == 5 and set(cands) == {"207786", "87452", "9"}
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        coll.candidates("bm25", depth=0)


def test_collection_conflicting_query_text_names_both_folders(tmp_path: Path) -> None:
    make_folder(tmp_path, "a", {"1": "first text"})
    make_folder(tmp_path, "b", {"1": "other text"})
    coll = Collection.open([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataFormatError, match="qid 1 has a different text in a and b"):
        _ = coll.queries


def test_collection_conflicting_passage_text_names_both_folders(tmp_path: Path) -> None:
    make_folder(tmp_path, "a", {"1": "q"}, passages={"p": "one"})
    make_folder(tmp_path, "b", {"2": "q"}, passages={"p": "two"})
    with pytest.raises(DataFormatError, match="pid p has a different text in a and b"):
        _ = Collection.open([tmp_path / "a", tmp_path / "b"]).passages


def test_validate_run_unknown_qid_names_qid_and_file(tmp_path: Path) -> None:
    make_folder(tmp_path, "f", {"1": "q"}, passages={"p": "t"}, runs={"bm25": ["1 Q0 p 1 1.0 t", "77 Q0 p 1 1.0 t"]})
    coll = Collection.open([tmp_path / "f"])
    with pytest.raises(DataFormatError) as info:
        coll.candidates("bm25")
    assert str(info.value).startswith(f"{tmp_path / 'f' / 'bm25.run'}: the run names query 77")
    with pytest.raises(DataFormatError, match=r"the run names query 5 \(and 1 more: 6\)"):
        coll.validate_run({"5": [], "6": [], "1": []}, "external.run")


def test_validate_run_missing_passages_lists_five_and_count(tmp_path: Path) -> None:
    lines = ["1 Q0 p 1 9.0 t"] + [f"1 Q0 m{i} {i + 2} {8 - i}.0 t" for i in range(7)]
    make_folder(tmp_path, "f", {"1": "q"}, passages={"p": "t"}, runs={"bm25": lines})
    with pytest.raises(DataFormatError, match=r"7 candidate passage\(s\) have no text: m0, m1, m2, m3, m4, \.\.\."):
        Collection.open(tmp_path / "f").candidates("bm25")


def test_collection_open_rejects_empty_and_duplicates() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Collection.open([])
    with pytest.raises(ConfigError, match="given twice"):
        Collection.open([MINI, MINI / ".." / "dl19-mini"])
