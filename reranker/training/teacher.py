"""Teacher scoring of triples: each distinct (query, passage) pair is scored once per member."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from reranker.data import Collection, ScoredTriple, Triple
from reranker.errors import ConfigError

Pairs = Sequence[tuple[str, str]]
"""(qid, pid) pairs."""


class Member(Protocol):
    """Scores (qid, pid) pairs given the texts; returns float32 scores in pair order."""

    name: str

    def score(
        self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *, progress: bool = False
    ) -> np.ndarray: ...


def score_triples(
    members: Sequence[Member], collection: Collection, triples: Sequence[Triple], *, progress: bool = False
) -> list[ScoredTriple]:
    """Scores of the mean ensemble of ``members`` for every triple (the paper's T2 when several).

    Raises NotFoundError when a triple's query or passage has no text in ``collection``.
    """
    if not members:
        raise ConfigError("at least one teacher model is needed")
    pairs = sorted({(t.qid, pid) for t in triples for pid in (t.pos, t.neg)})
    total = np.zeros(len(pairs), dtype=np.float64)
    for member in members:
        total += member.score(collection.queries, collection.passages, pairs, progress=progress)
    mean = total / len(members)
    index = {pair: float(s) for pair, s in zip(pairs, mean.tolist(), strict=True)}
    return [ScoredTriple(t.qid, t.pos, t.neg, index[(t.qid, t.pos)], index[(t.qid, t.neg)]) for t in triples]
