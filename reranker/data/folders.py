"""Data folders (one query set on disk, read lazily) and collections (several folders as one).

The files' formats and their readers are in :mod:`reranker.data.formats`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from reranker.data._io import PathLike
from reranker.data.formats import (
    FOLDER_LAYOUT,
    PASSAGES_FILES,
    QRELS_FILE,
    QRELS_RUN,
    QUERIES_FILE,
    RUN_SUFFIX,
    Qrels,
    Run,
    read_passages,
    read_qrels,
    read_queries,
    read_run,
    validate_run,
)
from reranker.errors import ConfigError, DataFormatError, NotFoundError


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
            raise DataFormatError(folder, None, f"both {present[0]} and {present[1]} exist; keep exactly one passages file")
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
            raise DataFormatError(
                self.path / f"{QRELS_RUN}{RUN_SUFFIX}",
                None,
                f"the run name {QRELS_RUN!r} is reserved for the judged pool; rename the file",
            )
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
                raise NotFoundError(
                    f"{self.path}: no run {name!r}; available: "
                    f"{', '.join([*self.run_names(), QRELS_RUN])}"
                    f"{'' if self.qrels else f' ({QRELS_RUN} needs a {QRELS_FILE})'}"
                )
        return {qid: list(ranking) for qid, ranking in self._runs[name].items()}

    def resolve_run(self, spec: str) -> str:
        """The first name of a comma-separated preference list (e.g. ``bm25,qrels``) that exists here."""
        names = parse_run_spec(spec)
        available = self.available_runs()
        for name in names:
            if name in available:
                return name
        raise NotFoundError(
            f"{self.path}: none of the runs {', '.join(names)} exists here; available: {', '.join(available) or 'none'}"
        )


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
                        raise DataFormatError(
                            folder.path / QRELS_FILE,
                            None,
                            f"qid {qid} pid {pid} has grade {target[pid]} in {first.name} "
                            f"but {grade} in {folder.name}; a judgment must agree across folders",
                        )
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
                    raise DataFormatError(
                        where,
                        None,
                        f"qid {qid} has candidates in both {owner[qid]} and "
                        f"{folder.name}; a query may be ranked by one folder only",
                    )
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
                raise DataFormatError(
                    folder.path,
                    None,
                    f"{id_name} {ident} has a different text in "
                    f"{owner[ident].name} and {folder.name}; {attr} shared by "
                    "folders must agree",
                )
            if ident not in merged:
                merged[ident] = text
                owner[ident] = folder
    return merged
