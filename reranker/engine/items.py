"""What the pre stage hands the core stage: prepared queries and passages, and the windows of texts
longer than the model reads at once (chunk and aggregate)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reranker.engine.config import Limits
from reranker.errors import ConfigError, InvalidInputError


@dataclass(frozen=True)
class QueryItem:
    """A prepared query: token ids (cross-encoder) or its encoded state (split models)."""

    data: np.ndarray
    """(length,) int64 ids or (length, dim) float state, without padding."""

    @property
    def length(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True)
class PassageItem:
    """A prepared passage: token ids (cross-encoder) or its state, from the store or from text."""

    data: np.ndarray
    """(length,) int64 ids or (length, dim) float state, without padding."""
    truncated: bool
    """The passage text was longer than the model's passage length."""
    from_store: bool
    """The state came from the passage store (no encoding at query time)."""
    coded: bool = False
    """``data`` holds the passage's (length,) int64 token rows in the passage store, not its state:
    it is scored from the store's codes (:meth:`reranker.store.PassageStore.dots`)."""

    @property
    def length(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True)
class Windowing:
    """How a candidate text longer than the model's passage length is scored: overlapping windows of
    word pieces, each scored as a passage, their scores aggregated (MaxP and FirstP: Dai and Callan,
    "Deeper Text Understanding for IR with Contextual Neural Language Modeling", SIGIR 2019)."""

    size: int
    """Word pieces per window (at most :attr:`limit`)."""
    stride: int
    """Word pieces between the starts of two windows (1 <= stride <= size)."""
    per_candidate: int
    """Windows scored of one candidate at most."""
    per_request: int
    """Windows scored in one request at most (one per candidate counted first)."""
    limit: int = 0
    """Word pieces the model reads of a passage at once: a text up to this long is one window, as a
    store build reads it (0 = :attr:`size`)."""

    def __post_init__(self) -> None:
        if not self.limit:
            object.__setattr__(self, "limit", self.size)
        if not (1 <= self.stride <= self.size <= self.limit and self.per_candidate >= 1 and self.per_request >= 1):
            raise ConfigError(f"invalid windowing {self}: need 1 <= stride <= size <= limit and limits >= 1")

    @classmethod
    def of(cls, limits: Limits, passage_tokens: int, arch: str = "") -> Windowing:
        """The windowing of a model's limits; ConfigError when a window is longer than the model reads."""
        size = limits.window_tokens or passage_tokens
        if size > passage_tokens:
            raise ConfigError(
                f"window_tokens {size} is longer than this {arch} model reads of a passage "
                f"({passage_tokens} word pieces); use at most {passage_tokens}"
            )
        stride = limits.window_stride or max(1, size // 2)
        if stride > size:
            raise ConfigError(f"window_stride {stride} is longer than a window ({size} word pieces); use at most {size}")
        return cls(size, stride, limits.max_windows_per_candidate, limits.max_windows_per_request, passage_tokens)

    def spans(self, pieces: int, granted: int | None = None) -> list[tuple[int, int]]:
        """(start, end) of every window over a text of ``pieces`` word pieces: the whole text when the
        model reads it at once, else windows of :attr:`size` every :attr:`stride` (the last one ends
        with the text); with ``granted`` windows only, the first ``granted`` of them, and a single
        one is the first :attr:`limit` pieces (what the model alone would read).

        >>> Windowing(4, 2, 8, 100).spans(3), Windowing(4, 2, 8, 100).spans(9)
        ([(0, 3)], [(0, 4), (2, 6), (4, 8), (5, 9)])
        >>> w = Windowing(4, 2, 8, 100, limit=6)
        >>> w.spans(6), w.spans(9), w.spans(9, granted=1)
        ([(0, 6)], [(0, 4), (2, 6), (4, 8), (5, 9)], [(0, 6)])
        """
        if pieces <= self.limit or granted == 1:
            return [(0, min(pieces, self.limit))]
        starts = [min(j * self.stride, pieces - self.size) for j in range(self.count(pieces))]
        return [(start, start + self.size) for start in starts[:granted]]

    def count(self, pieces: float) -> int:
        """Windows over a text of ``pieces`` word pieces (a real number: an estimate from characters).

        >>> Windowing(4, 2, 8, 100, limit=6).count(6), Windowing(4, 2, 8, 100, limit=6).count(9)
        (1, 4)
        """
        return 1 if pieces <= self.limit else 1 + math.ceil((pieces - self.size) / self.stride)

    def allot(self, wanted: Sequence[int]) -> list[int]:
        """Windows granted to each candidate wanting ``wanted`` of them: at least one each, at most
        :attr:`per_candidate`, the rest of :attr:`per_request` in request order.

        >>> Windowing(4, 2, 3, 6).allot([5, 1, 4, 2])
        [3, 1, 1, 1]
        """
        spare = self.per_request - len(wanted)
        granted = []
        for w in wanted:
            extra = max(0, min(w, self.per_candidate, spare + 1) - 1)
            spare -= extra
            granted.append(1 + extra)
        return granted


@dataclass(frozen=True)
class Passages:
    """The passage side of a request: one item per scored window, candidates in request order."""

    items: list[PassageItem]
    """Every window of every candidate (a passage from the store or a short text is one window)."""
    windows: np.ndarray
    """(candidates,) int64: windows scored per candidate (>= 1)."""
    truncated: list[bool]
    """Per candidate: text was left unread (past the last window scored)."""
    from_store: list[bool]
    """Per candidate: the state came from the passage store."""
    encoded: int
    """Windows encoded at query time (split models; 0 for the cross-encoder)."""

    def aggregate(self, scores: np.ndarray, how: str) -> np.ndarray:
        """(candidates,) scores from (windows,) window scores: ``max``, ``first-max`` (mean of the first
        and the best window) or ``first``; NaN in any window gives NaN.

        >>> p = Passages([], np.array([1, 3]), [False] * 2, [False] * 2, 0)
        >>> [p.aggregate(np.array([0.5, 0.1, 0.9, 0.3]), h).round(2).tolist() for h in ("max", "first-max", "first")]
        [[0.5, 0.9], [0.5, 0.5], [0.5, 0.1]]
        """
        starts = np.concatenate([[0], np.cumsum(self.windows)[:-1]])
        first = scores[starts]
        if how == "first":
            return first
        best = np.maximum.reduceat(scores, starts)
        if how == "max":
            return best
        if how == "first-max":
            return (first + best) / 2
        raise InvalidInputError(f"aggregate must be one of max, first-max or first, got {how!r}")
