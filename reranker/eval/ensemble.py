"""Teacher ensembles: weighted means of several models' scores for the same (query, passage) pairs
(combining *models*; combining a model with the first stage is :mod:`reranker.fusion`).

Different architectures score on different scales (BERT-cat logits, ColBERT sums of cosines, raw dot
products), so members are first brought to a common scale per query: ``zscore`` subtracts each
query's mean score and divides by its standard deviation over that query's scored passages. The
ensemble score is the weighted mean of the normalised member scores, times ``scale`` (Margin-MSE is
sensitive to the teacher's scale, so a teacher can be expressed in a student's score units).

Weights are picked on held-out training queries (:func:`pick_weights`), never on the test set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from reranker.errors import ConfigError
from reranker.eval.metrics import evaluate_run

PairScores = dict[tuple[str, str], float]
Normalize = Literal["none", "zscore"]
NORMALIZE = ("none", "zscore")


def _query_stats(scores: Mapping[tuple[str, str], float]) -> dict[str, tuple[float, float]]:
    """Per query: (mean, population standard deviation) of its passages' scores."""
    by_query: dict[str, list[float]] = {}
    for (qid, _), s in scores.items():
        by_query.setdefault(qid, []).append(s)
    stats = {}
    for qid, values in by_query.items():
        mean = math.fsum(values) / len(values)
        stats[qid] = (mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values)))
    return stats


def zscore(scores: Mapping[tuple[str, str], float]) -> PairScores:
    """Per-query z-scores; a query whose passages all score the same gets 0.0 for each."""
    stats = _query_stats(scores)
    out: PairScores = {}
    for (qid, pid), s in scores.items():
        mean, std = stats[qid]
        out[(qid, pid)] = (s - mean) / std if std > 0 else 0.0
    return out


def mean_query_std(scores: Mapping[tuple[str, str], float]) -> float:
    """Mean over queries of the standard deviation of a query's scores (a model's 'score unit')."""
    stds = [std for _, std in _query_stats(scores).values()]
    return math.fsum(stds) / len(stds) if stds else 0.0


def combine(
    members: Sequence[Mapping[tuple[str, str], float]],
    weights: Sequence[float] | None = None,
    *,
    normalize: Normalize = "zscore",
    scale: float = 1.0,
) -> PairScores:
    """Weighted mean of the members' (normalised) scores; every member must score the same pairs."""
    if not members:
        raise ConfigError("an ensemble needs at least one member")
    if normalize not in NORMALIZE:
        raise ConfigError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if weights is None:
        weights = [1.0] * len(members)
    if len(weights) != len(members):
        raise ConfigError(f"{len(weights)} weights for {len(members)} members; give one weight per member")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    if not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"scale must be a finite number > 0, got {scale}")
    keys = set(members[0])
    for i, m in enumerate(members[1:], start=2):
        if set(m) != keys:
            missing = sorted(keys ^ set(m))[:3]
            raise ConfigError(
                f"member {i} does not score the same (query, passage) pairs as member 1 "
                f"(e.g. {missing}); ensemble scores of the same triples or runs"
            )
    normed = [zscore(m) if normalize == "zscore" else dict(m) for m in members]
    total = sum(weights)
    return {k: scale * math.fsum(w * n[k] for w, n in zip(weights, normed, strict=True)) / total for k in members[0]}


def as_run(scores: Mapping[tuple[str, str], float]) -> dict[str, list[tuple[str, float]]]:
    run: dict[str, list[tuple[str, float]]] = {}
    for (qid, pid), s in scores.items():
        run.setdefault(qid, []).append((pid, s))
    for cands in run.values():
        cands.sort(key=lambda item: -item[1])
    return run


def weight_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with the given step (e.g. 0.1), each summing to 1."""
    if members < 1:
        raise ConfigError("weight grid needs at least one member")
    if not 0 < step <= 1 or abs(round(1 / step) * step - 1) > 1e-9:
        raise ConfigError(f"grid step must divide 1 (0.5, 0.25, 0.1, ...), got {step}")
    n = round(1 / step)
    return [tuple(c / n for c in combo) for combo in itertools.product(range(n + 1), repeat=members) if sum(combo) == n]


def pick_weights(
    members: Sequence[Mapping[tuple[str, str], float]],
    qrels: Mapping[str, Mapping[str, int]],
    queries: set[str],
    *,
    step: float = 0.1,
    normalize: Normalize = "zscore",
    rel_level: int = 1,
) -> list[tuple[tuple[float, ...], float]]:
    """nDCG@10 on ``queries`` (held-out, judged) for every weight vector of the grid, best first."""
    subset = [{k: v for k, v in m.items() if k[0] in queries} for m in members]
    judged = {q: qrels[q] for q in queries if qrels.get(q)}
    if not judged or not subset[0]:
        raise ConfigError("no judged validation query has scored pairs; cannot pick weights")
    if normalize == "zscore":  # once, not once per weight vector
        subset = [zscore(m) for m in subset]
    results = []
    for weights in weight_grid(len(members), step):
        run = as_run(combine(subset, weights, normalize="none"))
        results.append((weights, evaluate_run(judged, run, rel_level=rel_level)["ndcg@10"]))
    results.sort(key=lambda r: -r[1])
    return results
