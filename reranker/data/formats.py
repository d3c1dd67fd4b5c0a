"""Readers and writers for the MS MARCO / TREC files, and the data-folder / collection views.

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
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO

from reranker.data._io import PathLike, atomic_write_text, has_whitespace, iter_lines
from reranker.errors import ConfigError, DataFormatError, NotFoundError

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

FOLDER_LAYOUT = (f"a data folder holds {QUERIES_FILE} (required), passages.tsv.gz or passages.tsv, "
                 f"{QRELS_FILE} and <name>{RUN_SUFFIX} files")

# --------------------------------------------------------------------------------------------
# Readers


def _read_id_text(path: PathLike, id_name: str, what: str) -> dict[str, str]:
    """Read a two-column ``id<TAB>text`` file into a dict (file order)."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(path, lineno, f"expected 2 tab-separated columns ({id_name}<TAB>text), "
                                                f"found {len(cols)}")
        ident, text = cols
        if not ident or has_whitespace(ident):
            raise DataFormatError(path, lineno, f"{id_name} {ident!r} must be a non-empty token without spaces")
        if not text.strip():
            raise DataFormatError(path, lineno, f"{what} text of {id_name} {ident} is empty; every {what} "
                                                "needs a non-empty text")
        if ident in out:
            raise DataFormatError(path, lineno, f"duplicate {id_name} {ident} (first on line "
                                                f"{first_line[ident]}); each {id_name} may appear once")
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
            raise DataFormatError(path, lineno, f"expected 4 whitespace-separated columns (qid 0 pid grade), "
                                                f"found {len(cols)}")
        qid, _, pid, grade_text = cols
        try:
            grade = int(grade_text)
        except ValueError:
            raise DataFormatError(path, lineno, f"grade {grade_text!r} is not an integer; grades are "
                                                "integers such as 0, 1, 2, 3") from None
        judged = out.setdefault(qid, {})
        if pid in judged:
            raise DataFormatError(path, lineno, f"duplicate judgment of pid {pid} for qid {qid}; each "
                                                "(qid, pid) may be judged once")
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
            raise DataFormatError(path, lineno, f"expected 6 whitespace-separated columns "
                                                f"(qid Q0 pid rank score tag), found {len(cols)}")
        qid, _, pid, rank_text, score_text, _ = cols
        try:
            rank = int(rank_text)
        except ValueError:
            raise DataFormatError(path, lineno, f"rank {rank_text!r} is not an integer; ranks are "
                                                "1, 2, 3, ...") from None
        try:
            score = float(score_text)
        except ValueError:
            raise DataFormatError(path, lineno, f"score {score_text!r} is not a number") from None
        if math.isnan(score):
            raise DataFormatError(path, lineno, "score is NaN; scores must be numbers")
        if (qid, pid) in seen:
            raise DataFormatError(path, lineno, f"pid {pid} listed twice for qid {qid} (first on line "
                                                f"{seen[(qid, pid)]}); each (qid, pid) may appear once")
        seen[(qid, pid)] = lineno
        rows.setdefault(qid, []).append((rank, score, pid))
    return {qid: [(pid, score) for rank, score, pid in sorted(items, key=lambda r: (r[0], -r[1]))]
            for qid, items in rows.items()}


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


def validate_run(run: Mapping[str, Sequence[tuple[str, float]]], where: PathLike, *,
                 queries: Mapping[str, str], passages: Mapping[str, str] | None = None) -> None:
    """Check that every qid of ``run`` has a query text and, if ``passages`` is given and not
    empty, that every candidate pid has a passage text. ``where`` names the run in the error."""
    unknown = [qid for qid in run if qid not in queries]
    if unknown:
        raise DataFormatError(where, None, f"the run names query {unknown[0]}" + _more(unknown)
                              + f", which is not among the {len(queries)} queries; a run may only rank "
                                "queries of its data folder")
    if passages:
        missing = list(dict.fromkeys(pid for ranking in run.values() for pid, _ in ranking if pid not in passages))
        if missing:
            raise DataFormatError(where, None, f"{len(missing)} candidate passage(s) have no text: "
                                  f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}; "
                                  "every candidate must be in the passages file")


def _more(items: Sequence[str]) -> str:
    if len(items) == 1:
        return ""
    return f" (and {len(items) - 1} more: {', '.join(items[1:5])}{', ...' if len(items) > 5 else ''})"


# --------------------------------------------------------------------------------------------
# Data folders


@dataclass(frozen=True, eq=False)
class DataFolder:
    """One query set on disk (``queries.tsv`` plus optional passages, qrels and runs).

    Files are read lazily on first access and cached; the returned dicts are shared, so treat
    them as read-only. Open with :meth:`open`.
    """

    path: Path
    _runs: dict[str, Run] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: PathLike) -> DataFolder:
        """Open a data folder; errors if it does not exist or has no ``queries.tsv``."""
        folder = Path(path)
        if not folder.is_dir():
            raise NotFoundError(f"{folder}: no such data folder; {FOLDER_LAYOUT}")
        if not (folder / QUERIES_FILE).is_file():
            raise DataFormatError(folder, None, f"no {QUERIES_FILE} here; {FOLDER_LAYOUT}")
        present = [name for name in PASSAGES_FILES if (folder / name).is_file()]
        if len(present) > 1:
            raise DataFormatError(folder, None, f"both {present[0]} and {present[1]} exist; keep exactly one "
                                                "passages file")
        return cls(folder)

    @property
    def name(self) -> str:
        """The folder's base name, e.g. ``trec-dl-2019``."""
        return self.path.name

    @property
    def passages_path(self) -> Path | None:
        """The passages file, or None if the folder has none."""
        for name in PASSAGES_FILES:
            if (self.path / name).is_file():
                return self.path / name
        return None

    @cached_property
    def queries(self) -> dict[str, str]:
        """Query text per qid."""
        return read_queries(self.path / QUERIES_FILE)

    @cached_property
    def passages(self) -> dict[str, str]:
        """Passage text per pid; empty if the folder has no passages file."""
        source = self.passages_path
        return read_passages(source) if source is not None else {}

    @cached_property
    def qrels(self) -> Qrels:
        """Judgments per qid; empty if the folder has no ``qrels.txt``."""
        source = self.path / QRELS_FILE
        return read_qrels(source) if source.is_file() else {}

    def run_names(self) -> list[str]:
        """Sorted names of the ``*.run`` files (without the suffix)."""
        names = sorted(p.name[: -len(RUN_SUFFIX)] for p in self.path.glob(f"*{RUN_SUFFIX}") if p.is_file())
        if QRELS_RUN in names:
            raise DataFormatError(self.path / f"{QRELS_RUN}{RUN_SUFFIX}", None,
                                  f"the run name {QRELS_RUN!r} is reserved for the judged pool; rename the file")
        return names

    def available_runs(self) -> list[str]:
        """Run names that :meth:`run` accepts here: the run files plus ``qrels`` if judged."""
        return self.run_names() + ([QRELS_RUN] if self.qrels else [])

    def run(self, name: str) -> Run:
        """The candidates of run ``name`` (a fresh copy of the cached lists).

        ``qrels`` is the judged pool: per judged qid its judged pids in file order, score 0.0.
        """
        if name not in self._runs:
            if name == QRELS_RUN and self.qrels:
                self._runs[name] = {qid: [(pid, 0.0) for pid in judged] for qid, judged in self.qrels.items()}
            elif name in self.run_names():
                self._runs[name] = read_run(self.path / f"{name}{RUN_SUFFIX}")
            else:
                raise NotFoundError(f"{self.path}: no run {name!r}; available: "
                                    f"{', '.join([*self.run_names(), QRELS_RUN])}"
                                    f"{'' if self.qrels else f' ({QRELS_RUN} needs a {QRELS_FILE})'}")
        return {qid: list(ranking) for qid, ranking in self._runs[name].items()}

    def resolve_run(self, spec: str) -> str:
        """The first name of a comma-separated preference list (e.g. ``bm25,qrels``) that exists here."""
        names = parse_run_spec(spec)
        available = self.available_runs()
        for name in names:
            if name in available:
                return name
        raise NotFoundError(f"{self.path}: none of the runs {', '.join(names)} exists here; available: "
                            f"{', '.join(available) or 'none'}")


def parse_run_spec(spec: str) -> list[str]:
    """Split a run preference list ``a,b,c`` into names; ConfigError if it names none."""
    names = [part.strip() for part in str(spec).split(",") if part.strip()]
    if not names:
        raise ConfigError(f"run spec {spec!r} names no run; give a comma-separated list such as 'bm25,qrels'")
    return names


# --------------------------------------------------------------------------------------------
# Collections of folders


@dataclass(frozen=True, eq=False)
class Collection:
    """Several data folders seen as one: merged queries, passages, qrels and candidates.

    A qid (or pid) present in two folders must have the same text in both.
    """

    folders: tuple[DataFolder, ...]

    @classmethod
    def open(cls, paths: PathLike | Iterable[PathLike]) -> Collection:
        """Open one folder or several; ConfigError if none is given or one is given twice."""
        items: list[PathLike] = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not items:
            raise ConfigError("a collection needs at least one data folder")
        folders = tuple(DataFolder.open(p) for p in items)
        resolved = [f.path.resolve() for f in folders]
        for i, p in enumerate(resolved):
            if p in resolved[:i]:
                raise ConfigError(f"data folder {folders[i].path} is given twice")
        return cls(folders)

    @property
    def names(self) -> list[str]:
        """The folders' names."""
        return [f.name for f in self.folders]

    @cached_property
    def queries(self) -> dict[str, str]:
        """Query text per qid over all folders."""
        return _merge_texts(self.folders, "queries", "qid")

    @cached_property
    def passages(self) -> dict[str, str]:
        """Passage text per pid over all folders."""
        return _merge_texts(self.folders, "passages", "pid")

    @cached_property
    def qrels(self) -> Qrels:
        """Judgments per qid over all folders (judgments of one qid in two folders are merged)."""
        merged: Qrels = {}
        source: dict[tuple[str, str], DataFolder] = {}
        for folder in self.folders:
            for qid, judged in folder.qrels.items():
                target = merged.setdefault(qid, {})
                for pid, grade in judged.items():
                    if pid in target and target[pid] != grade:
                        first = source[(qid, pid)]
                        raise DataFormatError(folder.path / QRELS_FILE, None,
                                              f"qid {qid} pid {pid} has grade {target[pid]} in {first.name} "
                                              f"but {grade} in {folder.name}; a judgment must agree across folders")
                    target[pid] = grade
                    source.setdefault((qid, pid), folder)
        return merged

    def candidates(self, run_spec: str, depth: int | None = None) -> Run:
        """Candidates per qid merged over folders; each folder resolves ``run_spec`` itself.

        A run file is validated against its folder (qids must be queries; pids must have text
        when the folder has passages). The ``qrels`` pseudo-run keeps only judged pids that have
        text when the folder has passages. ``depth`` keeps the top-``depth`` of each query.
        """
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ConfigError(f"depth must be a positive integer or None, got {depth!r}")
        merged: Run = {}
        owner: dict[str, str] = {}
        for folder in self.folders:
            name = folder.resolve_run(run_spec)
            run = folder.run(name)
            where = folder.path / (QRELS_FILE if name == QRELS_RUN else f"{name}{RUN_SUFFIX}")
            if name == QRELS_RUN and folder.passages:
                run = {qid: [c for c in ranking if c[0] in folder.passages] for qid, ranking in run.items()}
                validate_run(run, where, queries=folder.queries)
            else:
                validate_run(run, where, queries=folder.queries, passages=folder.passages)
            for qid, ranking in run.items():
                if qid in merged:
                    raise DataFormatError(where, None, f"qid {qid} has candidates in both {owner[qid]} and "
                                                       f"{folder.name}; a query may be ranked by one folder only")
                merged[qid] = ranking[:depth] if depth is not None else ranking
                owner[qid] = folder.name
        return merged

    def validate_run(self, run: Mapping[str, Sequence[tuple[str, float]]], where: PathLike) -> None:
        """Check a run against the merged queries and (if the collection has any) passages."""
        validate_run(run, where, queries=self.queries, passages=self.passages or None)


def _merge_texts(folders: Sequence[DataFolder], attr: str, id_name: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    owner: dict[str, DataFolder] = {}
    for folder in folders:
        texts: dict[str, str] = getattr(folder, attr)
        if not merged and len(folders) == 1:
            return texts
        for ident, text in texts.items():
            if ident in merged and merged[ident] != text:
                raise DataFormatError(folder.path, None, f"{id_name} {ident} has a different text in "
                                                         f"{owner[ident].name} and {folder.name}; {attr} shared by "
                                                         "folders must agree")
            if ident not in merged:
                merged[ident] = text
                owner[ident] = folder
    return merged
