"""Training triples (query, positive, negative), teacher scores, and the train/validation split.

Two ways to build triples from a :class:`~reranker.data.folders.Collection`:

* :func:`labelled_triples`: a judged passage against every candidate or judged passage with a
  lower grade (unjudged counts as 0), for the teacher's own training.
* :func:`all_pairs_triples`: every pair of a query's top candidates, higher-ranked first; no
  labels needed, because the teacher's scores (Margin-MSE) decide the target margin.

Teacher-scored triples use the paper's published format
``pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid``.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reranker.data._io import PathLike, atomic_write_text, has_whitespace, iter_lines
from reranker.data.folders import Collection
from reranker.errors import ConfigError, DataFormatError

TRIPLE_COLUMNS = 3
SCORE_COLUMNS = 5


@dataclass(frozen=True)
class Triple:
    """A query with a passage that should rank above another one."""

    qid: str
    pos: str
    """The passage that should score higher."""
    neg: str
    """The passage that should score lower."""


@dataclass(frozen=True)
class ScoredTriple(Triple):
    """A triple with the teacher's scores of both passages."""

    pos_score: float
    neg_score: float

    @property
    def margin(self) -> float:
        """The teacher's margin ``pos_score - neg_score`` (the Margin-MSE target)."""
        return self.pos_score - self.neg_score


def _triple_key(t: Triple) -> tuple[str, str, str]:
    return (t.qid, t.pos, t.neg)


def _check_max_per_query(max_per_query: int | None) -> None:
    if max_per_query is not None and (isinstance(max_per_query, bool) or not isinstance(max_per_query, int) or max_per_query < 1):
        raise ConfigError(f"max_per_query must be a positive integer or None, got {max_per_query!r}")


def _rng(seed: int, qid: str) -> random.Random:
    """A generator seeded from (seed, qid) only, so a query's sample ignores folder order."""
    digest = hashlib.sha256(f"{seed}\x1f{qid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _sample(triples: list[Triple], max_per_query: int | None, seed: int, qid: str) -> list[Triple]:
    if max_per_query is None or len(triples) <= max_per_query:
        return triples
    return _rng(seed, qid).sample(sorted(triples, key=_triple_key), max_per_query)


def labelled_triples(
    collection: Collection, run_spec: str, *, max_per_query: int | None = None, seed: int = 0, depth: int | None = None
) -> list[Triple]:
    """Triples from judgments: every judged p+ (grade >= 1) against every lower-graded p-.

    The pool of a judged query is its run candidates (the top ``depth`` if given) plus its other
    judged passages; an unjudged passage has grade 0, so graded pairs (3 over 1) are included
    and equal grades are never paired. Passages without text and judged queries without a query
    text are skipped. ``max_per_query`` samples that many triples per query, seeded from
    ``(seed, qid)``. The result is sorted by (qid, pos, neg).
    """
    _check_max_per_query(max_per_query)
    queries, passages, qrels = collection.queries, collection.passages, collection.qrels
    candidates = collection.candidates(run_spec, depth)
    out: list[Triple] = []
    for qid in sorted(qrels):
        if qid not in queries:
            continue
        judged = qrels[qid]
        pool = [pid for pid in dict.fromkeys([pid for pid, _ in candidates.get(qid, [])] + list(judged)) if pid in passages]
        triples = [
            Triple(qid, pos, neg) for pos in pool if judged.get(pos, 0) >= 1 for neg in pool if judged.get(neg, 0) < judged[pos]
        ]
        out.extend(_sample(triples, max_per_query, seed, qid))
    return sorted(out, key=_triple_key)


def all_pairs_triples(
    collection: Collection, run_spec: str, *, depth: int | None = None, max_per_query: int | None = None, seed: int = 0
) -> list[Triple]:
    """Every unordered pair of each query's top-``depth`` candidates, the higher-ranked as ``pos``.

    No labels are needed. Candidates without text and queries without text are skipped, so a
    query with ``n`` usable candidates gives ``n * (n - 1) / 2`` triples before sampling
    (``max_per_query``, seeded from ``(seed, qid)``). Sorted by (qid, pos, neg).
    """
    _check_max_per_query(max_per_query)
    queries, passages = collection.queries, collection.passages
    candidates = collection.candidates(run_spec, depth)
    out: list[Triple] = []
    for qid in sorted(candidates):
        if qid not in queries:
            continue
        ranked = [pid for pid in dict.fromkeys(pid for pid, _ in candidates[qid]) if pid in passages]
        triples = [Triple(qid, ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]
        out.extend(_sample(triples, max_per_query, seed, qid))
    return sorted(out, key=_triple_key)


# --------------------------------------------------------------------------------------------
# Files


def _check_ids(t: Triple) -> None:
    for name, value in (("qid", t.qid), ("pos", t.pos), ("neg", t.neg)):
        if not value or has_whitespace(value):
            raise ConfigError(f"triple {name} {value!r} must be a non-empty token without spaces")


def write_triples(path: PathLike, triples: Iterable[Triple]) -> Path:
    """Write ``qid<TAB>pos_pid<TAB>neg_pid`` lines atomically."""
    lines = []
    for t in triples:
        _check_ids(t)
        lines.append(f"{t.qid}\t{t.pos}\t{t.neg}\n")

    def _write(handle: IO[str]) -> None:
        handle.writelines(lines)

    return atomic_write_text(path, _write)


def _format_score(value: float, t: Triple) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"teacher score {number} of triple ({t.qid}, {t.pos}, {t.neg}) is not finite")
    return repr(number)


def write_scores(path: PathLike, scored: Iterable[ScoredTriple]) -> Path:
    """Write ``pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid`` lines atomically.

    Scores are written with ``repr(float)``, so they read back bit-exactly.
    """
    lines = []
    for t in scored:
        _check_ids(t)
        lines.append(f"{_format_score(t.pos_score, t)}\t{_format_score(t.neg_score, t)}\t{t.qid}\t{t.pos}\t{t.neg}\n")

    def _write(handle: IO[str]) -> None:
        handle.writelines(lines)

    return atomic_write_text(path, _write)


_LAYOUTS = {
    TRIPLE_COLUMNS: "qid<TAB>pos_pid<TAB>neg_pid",
    SCORE_COLUMNS: "pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid",
}


def _parse_row(path: PathLike, lineno: int, cols: list[str]) -> Triple:
    ids = cols[-3:]
    for name, ident in zip(("qid", "pos_pid", "neg_pid"), ids, strict=True):
        if not ident or has_whitespace(ident):
            raise DataFormatError(path, lineno, f"{name} {ident!r} must be a non-empty token without spaces")
    qid, pos, neg = ids
    if pos == neg:
        raise DataFormatError(
            path, lineno, f"positive and negative passage are both {pos}; a triple needs two different passages"
        )
    if len(cols) == TRIPLE_COLUMNS:
        return Triple(qid, pos, neg)
    scores: list[float] = []
    for name, text in zip(("pos_score", "neg_score"), cols[:2], strict=True):
        try:
            value = float(text)
        except ValueError:
            raise DataFormatError(path, lineno, f"{name} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise DataFormatError(path, lineno, f"{name} {text!r} is not finite; teacher scores must be finite numbers")
        scores.append(value)
    return ScoredTriple(qid, pos, neg, scores[0], scores[1])


def _read_rows(path: PathLike, expected: int | None) -> list[Triple]:
    """Parse a 3- or 5-column file; ``expected=None`` takes the count from the first line."""
    out: list[Triple] = []
    first = 0
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if expected is None:
            if len(cols) not in _LAYOUTS:
                raise DataFormatError(
                    path,
                    lineno,
                    f"found {len(cols)} tab-separated columns; a training file has 3 ({_LAYOUTS[3]}) or 5 ({_LAYOUTS[5]})",
                )
            expected, first = len(cols), lineno
        if len(cols) != expected:
            since = f" like line {first}" if first else ""
            raise DataFormatError(
                path,
                lineno,
                f"found {len(cols)} tab-separated columns, expected {expected}"
                f"{since} ({_LAYOUTS[expected]}); a file may not mix formats",
            )
        out.append(_parse_row(path, lineno, cols))
    return out


def read_triples(path: PathLike) -> list[Triple]:
    """Read ``qid<TAB>pos_pid<TAB>neg_pid`` lines."""
    return _read_rows(path, TRIPLE_COLUMNS)


def read_scores(path: PathLike) -> list[ScoredTriple]:
    """Read teacher-scored triples ``pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid``."""
    rows = _read_rows(path, SCORE_COLUMNS)
    return [r for r in rows if isinstance(r, ScoredTriple)]


def read_training_file(path: PathLike) -> list[Triple] | list[ScoredTriple]:
    """Read triples or teacher scores, choosing by the first line's column count (3 or 5).

    Errors on an empty file or on a line whose column count differs from the first line's.
    """
    rows = _read_rows(path, None)
    if not rows:
        raise DataFormatError(path, None, f"the file is empty; a training file has lines of {_LAYOUTS[3]} or {_LAYOUTS[5]}")
    if isinstance(rows[0], ScoredTriple):
        return [r for r in rows if isinstance(r, ScoredTriple)]
    return rows


# --------------------------------------------------------------------------------------------
# Validation split


def _split_key(seed: int, qid: str) -> bytes:
    return hashlib.sha256(f"split\x1f{seed}\x1f{qid}".encode()).digest()


def split_validation(qids: Iterable[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Split query ids into (train, validation) deterministically by a SHA-256 of (seed, qid).

    The queries with the smallest hashes form the validation set, ``round(fraction * n)`` of them
    (at most ``n - 1``, so training keeps a query). ``fraction`` must be in [0, 1).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction!r}")
    unique = sorted(set(qids))
    n_val = min(round(fraction * len(unique)), max(len(unique) - 1, 0))
    ordered = sorted(unique, key=lambda q: (_split_key(seed, q), q))
    validation = set(ordered[:n_val])
    return set(unique) - validation, validation


def validation_queries(qrels: Mapping[str, Mapping[str, int]], fraction: float, seed: int) -> set[str]:
    """The held-out queries of training: the validation part of :func:`split_validation` over the
    queries with at least one judgment (what ``reranker train``, ``validate`` and ``fuse`` share)."""
    return split_validation([q for q, judged in qrels.items() if judged], fraction, seed)[1]
