"""Ranking metrics in pure Python, matching trec_eval / pytrec_eval (and so ir-measures).

Conventions (those of trec_eval):

* A run is ordered by score descending, ties by pid descending (string order); the rank field
  of a run file is ignored.
* nDCG uses the grade itself as gain (not ``2**g - 1``), a ``log2(rank + 1)`` discount and an
  ideal ranking made of all judged passages with grade > 0; it ignores the relevance level.
* RR and recall count a passage as relevant if its grade >= ``rel_level``. A query with no
  relevant passage scores 0 for both (it is *not* skipped: pytrec_eval reports 0 for it).
* The mean is over the queries that are both in the qrels and in the run (trec_eval without
  ``-c``); ``complete=True`` averages over every judged query, a missing one scoring 0
  (trec_eval ``-c``, which is what ir-measures reports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from reranker.errors import ConfigError


def _check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{name} must be a positive integer, got {k!r}")


def rel_level_for(qrels: Mapping[str, Mapping[str, int]]) -> int:
    """2 if any grade exceeds 1 (graded TREC DL judgments), else 1 (binary MS MARCO judgments)."""
    return 2 if any(grade > 1 for judged in qrels.values() for grade in judged.values()) else 1


def rank_candidates(candidates: Sequence[tuple[str, float]]) -> list[str]:
    """Pids in trec_eval order: score descending, ties by pid descending."""
    return [pid for pid, _ in sorted(candidates, key=lambda c: (float(c[1]), c[0]), reverse=True)]


def ndcg_at_k(qrels_q: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """trec_eval's ``ndcg_cut.k``: linear gains, log2 discount, ideal over all grades > 0."""
    _check_k(k)
    dcg = sum(max(qrels_q.get(pid, 0), 0) / math.log2(i + 2) for i, pid in enumerate(ranking[:k]))
    ideal = sorted((g for g in qrels_q.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def rr_at_k(qrels_q: Mapping[str, int], ranking: Sequence[str], k: int, rel_level: int = 1) -> float:
    """Reciprocal rank of the first passage with grade >= ``rel_level`` in the top ``k`` (else 0)."""
    _check_k(k)
    for i, pid in enumerate(ranking[:k]):
        if qrels_q.get(pid, 0) >= rel_level:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(qrels_q: Mapping[str, int], ranking: Sequence[str], k: int, rel_level: int = 1) -> float:
    """Share of the judged passages with grade >= ``rel_level`` found in the top ``k``.

    The denominator counts every such judged passage, retrieved or not; a query with none
    scores 0.0, as in trec_eval.
    """
    _check_k(k)
    relevant = sum(1 for g in qrels_q.values() if g >= rel_level)
    if relevant == 0:
        return 0.0
    found = sum(1 for pid in ranking[:k] if qrels_q.get(pid, 0) >= rel_level)
    return found / relevant


def evaluate_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[tuple[str, float]]],
    *,
    k_ndcg: int = 10,
    k_rr: int = 10,
    k_recall: int = 100,
    rel_level: int | None = None,
    complete: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-query ``ndcg@k``, ``mrr@k`` and ``recall@k`` for the judged queries of the run.

    ``rel_level`` defaults to :func:`rel_level_for` of ``qrels``. With ``complete=True`` a judged
    query missing from the run is included with zeros.
    """
    for name, k in (("k_ndcg", k_ndcg), ("k_rr", k_rr), ("k_recall", k_recall)):
        _check_k(k, name)
    level = rel_level_for(qrels) if rel_level is None else rel_level
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if qid not in run and not complete:
            continue
        candidates = run.get(qid, [])
        ranking = rank_candidates(candidates)
        if len(set(ranking)) != len(ranking):
            raise ConfigError(f"the run lists a passage twice for query {qid}; each passage may appear once")
        out[qid] = {
            f"ndcg@{k_ndcg}": ndcg_at_k(judged, ranking, k_ndcg),
            f"mrr@{k_rr}": rr_at_k(judged, ranking, k_rr, level),
            f"recall@{k_recall}": recall_at_k(judged, ranking, k_recall, level),
        }
    return out


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[tuple[str, float]]],
    *,
    k_ndcg: int = 10,
    k_rr: int = 10,
    k_recall: int = 100,
    rel_level: int | None = None,
    complete: bool = False,
) -> dict[str, float]:
    """Mean ``ndcg@k``, ``mrr@k``, ``recall@k`` and the number of ``queries`` averaged over.

    The mean is over the queries in ``qrels`` that are in ``run`` (all judged queries with
    ``complete=True``); with none, every metric is 0.0 and ``queries`` is 0.
    """
    per_query = evaluate_per_query(
        qrels, run, k_ndcg=k_ndcg, k_rr=k_rr, k_recall=k_recall, rel_level=rel_level, complete=complete
    )
    names = (f"ndcg@{k_ndcg}", f"mrr@{k_rr}", f"recall@{k_recall}")
    n = len(per_query)
    result = {name: (math.fsum(v[name] for v in per_query.values()) / n if n else 0.0) for name in names}
    result["queries"] = float(n)
    return result
