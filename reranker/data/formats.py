"""Readers and writers for the MS MARCO / TREC files (data folders and collections: :mod:`.folders`).

File formats (see ``data/SOURCE_README.md``):

* ``queries.tsv``: ``qid<TAB>query text``
* ``passages.tsv[.gz]``: ``pid<TAB>passage text``
* ``qrels.txt``: TREC qrels ``qid 0 pid grade`` (whitespace separated, integer grade)
* ``<name>.run``: TREC run ``qid Q0 pid rank score tag``

Every reader raises :class:`~reranker.errors.DataFormatError` naming the file, the line and what
is allowed. Nothing here imports torch: the server uses these modules too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from reranker.data._io import PathLike, atomic_write_text, has_whitespace, iter_lines
from reranker.errors import ConfigError, DataFormatError

Run = dict[str, list[tuple[str, float]]]
"""A ranking per query id: ``(pid, score)`` pairs, best first."""
Qrels = dict[str, dict[str, int]]
"""Relevance grades per query id and passage id."""

QUERIES_FILE = "queries.tsv"
PASSAGES_FILES = ("passages.tsv.gz", "passages.tsv")
QRELS_FILE = "qrels.txt"
RUN_SUFFIX = ".run"
QRELS_RUN = "qrels"
"""Name of the pseudo-run made of the judged pool of each query."""

FOLDER_LAYOUT = (
    f"a data folder holds {QUERIES_FILE} (required), passages.tsv.gz or passages.tsv, {QRELS_FILE} and <name>{RUN_SUFFIX} files"
)

# --------------------------------------------------------------------------------------------
# Readers


def _read_id_text(path: PathLike, id_name: str, what: str) -> dict[str, str]:
    """Read a two-column ``id<TAB>text`` file into a dict (file order)."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(path, lineno, f"expected 2 tab-separated columns ({id_name}<TAB>text), found {len(cols)}")
        ident, text = cols
        if not ident or has_whitespace(ident):
            raise DataFormatError(path, lineno, f"{id_name} {ident!r} must be a non-empty token without spaces")
        if not text.strip():
            raise DataFormatError(path, lineno, f"{what} text of {id_name} {ident} is empty; every {what} needs a non-empty text")
        if ident in out:
            raise DataFormatError(
                path, lineno, f"duplicate {id_name} {ident} (first on line {first_line[ident]}); each {id_name} may appear once"
            )
        out[ident] = text
        first_line[ident] = lineno
    return out


def read_queries(path: PathLike) -> dict[str, str]:
    """Read ``qid<TAB>text`` lines; errors on a missing column, a duplicate qid or an empty text."""
    return _read_id_text(path, "qid", "query")


def read_passages(path: PathLike) -> dict[str, str]:
    """Read ``pid<TAB>text`` lines (plain or ``.gz``); errors on a missing column, duplicate or empty text."""
    return _read_id_text(path, "pid", "passage")


def read_qrels(path: PathLike) -> Qrels:
    """Read TREC qrels ``qid 0 pid grade``; per qid the judged pids in file order.

    Errors on a wrong column count, a non-integer grade, or a (qid, pid) judged twice.
    """
    out: Qrels = {}
    for lineno, line in iter_lines(path):
        cols = line.split()
        if len(cols) != 4:
            raise DataFormatError(path, lineno, f"expected 4 whitespace-separated columns (qid 0 pid grade), found {len(cols)}")
        qid, _, pid, grade_text = cols
        try:
            grade = int(grade_text)
        except ValueError:
            raise DataFormatError(
                path, lineno, f"grade {grade_text!r} is not an integer; grades are integers such as 0, 1, 2, 3"
            ) from None
        judged = out.setdefault(qid, {})
        if pid in judged:
            raise DataFormatError(
                path, lineno, f"duplicate judgment of pid {pid} for qid {qid}; each (qid, pid) may be judged once"
            )
        judged[pid] = grade
    return out


def read_run(path: PathLike) -> Run:
    """Read a TREC run ``qid Q0 pid rank score tag``.

    Returns per qid (in order of first appearance) the ``(pid, score)`` pairs sorted by rank
    ascending, ties by score descending. Errors on a wrong column count, a non-integer rank, a
    non-numeric or NaN score, or a (qid, pid) listed twice.
    """
    rows: dict[str, list[tuple[int, float, str]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for lineno, line in iter_lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise DataFormatError(
                path, lineno, f"expected 6 whitespace-separated columns (qid Q0 pid rank score tag), found {len(cols)}"
            )
        qid, _, pid, rank_text, score_text, _ = cols
        try:
            rank = int(rank_text)
        except ValueError:
            raise DataFormatError(path, lineno, f"rank {rank_text!r} is not an integer; ranks are 1, 2, 3, ...") from None
        try:
            score = float(score_text)
        except ValueError:
            raise DataFormatError(path, lineno, f"score {score_text!r} is not a number") from None
        if math.isnan(score):
            raise DataFormatError(path, lineno, "score is NaN; scores must be numbers")
        if (qid, pid) in seen:
            raise DataFormatError(
                path,
                lineno,
                f"pid {pid} listed twice for qid {qid} (first on line {seen[(qid, pid)]}); each (qid, pid) may appear once",
            )
        seen[(qid, pid)] = lineno
        rows.setdefault(qid, []).append((rank, score, pid))
    return {qid: [(pid, score) for rank, score, pid in sorted(items, key=lambda r: (r[0], -r[1]))] for qid, items in rows.items()}


def write_run(path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Path:
    """Write a TREC run atomically: per qid, ranks 1..n by descending score (stable for ties).

    Scores are written with ``repr`` so they read back exactly. Raises ConfigError for a tag or
    id with spaces, a non-finite score, or a pid listed twice for one query.
    """
    if not tag or has_whitespace(tag):
        raise ConfigError(f"run tag {tag!r} must be a non-empty token without spaces")
    lines: list[str] = []
    for qid, ranking in run.items():
        if not qid or has_whitespace(qid):
            raise ConfigError(f"qid {qid!r} must be a non-empty token without spaces")
        seen: set[str] = set()
        checked: list[tuple[str, float]] = []
        for pid, score in ranking:
            value = float(score)
            if not pid or has_whitespace(pid):
                raise ConfigError(f"pid {pid!r} of qid {qid} must be a non-empty token without spaces")
            if not math.isfinite(value):
                raise ConfigError(f"score of pid {pid} for qid {qid} is {value}; scores must be finite")
            if pid in seen:
                raise ConfigError(f"pid {pid} listed twice for qid {qid}; a run lists each passage once")
            seen.add(pid)
            checked.append((pid, value))
        ordered = sorted(checked, key=lambda item: -item[1])
        lines.extend(f"{qid} Q0 {pid} {rank} {score!r} {tag}\n" for rank, (pid, score) in enumerate(ordered, 1))

    def _write(handle: IO[str]) -> None:
        handle.writelines(lines)

    return atomic_write_text(path, _write)


def validate_run(
    run: Mapping[str, Sequence[tuple[str, float]]],
    where: PathLike,
    *,
    queries: Mapping[str, str],
    passages: Mapping[str, str] | None = None,
) -> None:
    """Check that every qid of ``run`` has a query text and, if ``passages`` is given and not
    empty, that every candidate pid has a passage text. ``where`` names the run in the error."""
    unknown = [qid for qid in run if qid not in queries]
    if unknown:
        raise DataFormatError(
            where,
            None,
            f"the run names query {unknown[0]}"
            + _more(unknown)
            + f", which is not among the {len(queries)} queries; a run may only rank "
            "queries of its data folder",
        )
    if passages:
        missing = list(dict.fromkeys(pid for ranking in run.values() for pid, _ in ranking if pid not in passages))
        if missing:
            raise DataFormatError(
                where,
                None,
                f"{len(missing)} candidate passage(s) have no text: "
                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}; "
                "every candidate must be in the passages file",
            )


def _more(items: Sequence[str]) -> str:
    if len(items) == 1:
        return ""
    return f" (and {len(items) - 1} more: {', '.join(items[1:5])}{', ...' if len(items) > 5 else ''})"
