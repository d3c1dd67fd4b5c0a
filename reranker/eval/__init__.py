"""Ranking metrics (pure Python, trec_eval conventions) and an ir-measures cross-check."""

from __future__ import annotations

from reranker.eval.irm import evaluate_with_ir_measures
from reranker.eval.metrics import (
    evaluate_per_query,
    evaluate_run,
    ndcg_at_k,
    rank_candidates,
    recall_at_k,
    rel_level_for,
    rr_at_k,
)

__all__ = [
    "evaluate_per_query",
    "evaluate_run",
    "evaluate_with_ir_measures",
    "ndcg_at_k",
    "rank_candidates",
    "recall_at_k",
    "rel_level_for",
    "rr_at_k",
]
