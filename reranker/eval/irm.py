"""The same metrics computed by ir-measures (an optional dependency), as a cross-check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reranker.eval.metrics import rank_candidates, rel_level_for


def evaluate_with_ir_measures(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[tuple[str, float]]],
    rel_level: int | None = None,
    *,
    k_ndcg: int = 10,
    k_rr: int = 10,
    k_recall: int = 100,
    complete: bool = False,
    break_ties: bool = True,
) -> dict[str, float]:
    """``nDCG@k``, ``RR(rel=L)@k`` and ``R(rel=L)@k`` from ir-measures, under the keys of
    :func:`reranker.eval.metrics.evaluate_run`.

    ir-measures averages over every judged query (a missing one scores 0); unless ``complete``,
    the qrels are first restricted to the run's queries, as :func:`evaluate_run` does.
    ir-measures breaks score ties differently per measure (pytrec_eval: pid descending; its
    MS MARCO RR: pid ascending), so with ``break_ties`` the run is first put in trec_eval order
    (score descending, pid descending) and handed over with strictly decreasing scores.
    """
    try:
        import ir_measures
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("evaluate_with_ir_measures needs ir-measures; install it with pip install 'reranker[train]'") from exc

    level = rel_level_for(qrels) if rel_level is None else rel_level
    judged = {qid: dict(grades) for qid, grades in qrels.items() if complete or qid in run}
    if break_ties:
        scored = {qid: {pid: float(-i) for i, pid in enumerate(rank_candidates(cands))} for qid, cands in run.items()}
    else:
        scored = {qid: {pid: float(score) for pid, score in cands} for qid, cands in run.items()}
    names = {
        ir_measures.nDCG @ k_ndcg: f"ndcg@{k_ndcg}",
        ir_measures.RR(rel=level) @ k_rr: f"mrr@{k_rr}",
        ir_measures.R(rel=level) @ k_recall: f"recall@{k_recall}",
    }
    values: dict[str, list[float]] = {name: [] for name in names.values()}
    queries: set[str] = set()
    if judged:
        for metric in ir_measures.iter_calc(list(names), judged, scored):
            values[names[metric.measure]].append(float(metric.value))
            queries.add(metric.query_id)
    result = {name: (sum(v) / len(v) if v else 0.0) for name, v in values.items()}
    result["queries"] = float(len(queries))
    return result
