"""Fitting and measuring a calibration (:mod:`reranker.calibration`): Platt scaling by scikit-learn's
logistic regression on validation queries, expected calibration error, Brier score and the
reliability diagram's bins, on judged candidates (relevant = grade >= the qrels' level: 2 on TREC
DL's graded judgments, 1 on MS MARCO's binary ones)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reranker.calibration import Calibration
from reranker.errors import InvalidInputError


@dataclass(frozen=True)
class Judged:
    """Judged candidates: each one's feature (the score, or per query token), label and query's tokens."""

    scores: np.ndarray
    labels: np.ndarray
    tokens: np.ndarray


def judged(
    candidates: Mapping[str, list[tuple[str, float]]],
    scores: Mapping[tuple[str, str], float],
    qrels: Mapping[str, Mapping[str, int]],
    level: int,
    query_tokens: Callable[[str], int],
) -> Judged:
    """The candidates of judged queries with their labels. Graded judgments (TREC DL, ``level`` 2) are
    dense: unjudged passages are left out. Binary ones (MS MARCO, ``level`` 1) list only the relevant
    passages: an unjudged candidate counts as not relevant, as MS MARCO's evaluation does."""
    sparse = level == 1
    rows = [
        (scores[(q, p)], float(qrels[q].get(p, 0) >= level), query_tokens(q))
        for q, cands in candidates.items()
        if q in qrels
        for p, _ in cands
        if (sparse or p in qrels[q]) and np.isfinite(scores[(q, p)])
    ]
    if not rows or len({r[1] for r in rows}) < 2:
        raise InvalidInputError("calibration needs judged candidates of both labels (relevant and not)")
    s, y, t = (np.array(c, dtype=np.float64) for c in zip(*rows, strict=True))
    return Judged(s, y, t)


def fit_platt(data: Judged, per_query_token: bool) -> Calibration:
    """Platt scaling fitted by maximum likelihood (scikit-learn, no regularisation to speak of)."""
    from sklearn.linear_model import LogisticRegression

    x = data.scores / np.maximum(data.tokens, 1) if per_query_token else data.scores
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x.reshape(-1, 1), data.labels)
    return Calibration(float(fit.coef_[0, 0]), float(fit.intercept_[0]), per_query_token)


def measure(cal: Calibration, data: Judged, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error (``bins`` equal-width bins, weighted by count), Brier score and the
    reliability bins (mean predicted, fraction relevant, count) of ``cal`` on ``data``."""
    p = np.concatenate([cal.relevance(data.scores[data.tokens == t], int(t)) for t in np.unique(data.tokens)])
    y = np.concatenate([data.labels[data.tokens == t] for t in np.unique(data.tokens)])
    which = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            table.append({"predicted": float(p[m].mean()), "relevant": float(y[m].mean()), "count": int(m.sum())})
            ece += m.sum() / len(p) * abs(p[m].mean() - y[m].mean())
    kept = p >= 0.5
    return {
        "ece": float(ece),
        "brier": float(np.mean((p - y) ** 2)),
        "precision_at_0.5": float(y[kept].mean()) if kept.any() else None,
        "kept_at_0.5": int(kept.sum()),
        "pairs": len(p),
        "positives": int(y.sum()),
        "bins": table,
    }
