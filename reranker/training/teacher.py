"""Teacher scoring of triples: each distinct (query, passage) pair is scored once per model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reranker.data import Collection, ScoredTriple, Triple
from reranker.errors import ConfigError, NotFoundError
from reranker.models.checkpoint import Loaded
from reranker.training.inference import score_pairs


def score_triples(teachers: Sequence[Loaded], collection: Collection, triples: Sequence[Triple], *,
                  batch_size: int = 64, progress: bool = False) -> list[ScoredTriple]:
    """Scores of the mean ensemble of ``teachers`` for every triple (the paper's T2 when several)."""
    if not teachers:
        raise ConfigError("at least one teacher model is needed")
    pairs = sorted({(t.qid, pid) for t in triples for pid in (t.pos, t.neg)})
    for qid, pid in pairs:
        if qid not in collection.queries:
            raise NotFoundError(f"query {qid} of the triples has no text in the data folders")
        if pid not in collection.passages:
            raise NotFoundError(f"passage {pid} of the triples has no text in the data folders")
    queries = [collection.queries[q] for q, _ in pairs]
    passages = [collection.passages[p] for _, p in pairs]
    total = np.zeros(len(pairs), dtype=np.float64)
    for i, teacher in enumerate(teachers):
        total += score_pairs(teacher, queries, passages, batch_size=batch_size, progress=progress,
                             desc=f"teacher {i + 1}/{len(teachers)}")
    mean = total / len(teachers)
    index = {pair: float(s) for pair, s in zip(pairs, mean.tolist(), strict=True)}
    return [ScoredTriple(t.qid, t.pos, t.neg, index[(t.qid, t.pos)], index[(t.qid, t.neg)]) for t in triples]
