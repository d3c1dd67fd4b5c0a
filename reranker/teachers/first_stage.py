"""Validation lists of each first-stage kind, and the fusion choice per kind shipped with a model.

A re-ranker is deployed behind a lexical (BM25), a dense or a learned-sparse retriever, and how much
of the first stage's score to keep differs between them. :func:`first_stage_lists` retrieves the
top ``depth`` passages of a passage pool for validation queries with one first stage of each kind
that installs here: BM25 (bm25s), dense (mpnet cosine) and learned sparse (SPLADE-tiny), the teacher
members of :mod:`reranker.teachers`. ``reranker pick-fusion`` picks a rule per list on those queries,
and :func:`ship_first_stage_fusion` writes the picks into the model's ``config.json`` (its manifest
re-written), where the server and ``reranker evaluate --first-stage`` read them.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reranker.config import ModelConfig
from reranker.errors import ConfigError
from reranker.fusion import FIRST_STAGES, FusionRule

KIND_MEMBERS = {"dense": "hf-cosine:mpnet", "sparse": "splade:splade-tiny"}
"""The first stage of each model-based kind (a teacher-member spec)."""

Run = dict[str, list[tuple[str, float]]]


def first_stage_lists(
    queries: Mapping[str, str],
    passages: Mapping[str, str],
    kinds: Sequence[str] = FIRST_STAGES,
    *,
    depth: int = 100,
    members: Mapping[str, str] = KIND_MEMBERS,
    progress: bool = True,
) -> dict[str, Run]:
    """kind -> run: each query's top-``depth`` of ``passages`` by that first stage, best first.

    Dense and sparse score every (query, passage) pair with the member's vectors (each passage
    encoded once). Raises ConfigError for an unknown kind or an empty pool.
    """
    unknown = sorted(set(kinds) - set(FIRST_STAGES))
    if unknown or not passages:
        raise ConfigError(f"kinds must be among {', '.join(FIRST_STAGES)} (got {unknown}) over a non-empty pool")
    runs: dict[str, Run] = {}
    if "bm25" in kinds:
        from reranker.data.bm25 import BM25Config, bm25_run

        runs["bm25"] = bm25_run(queries, passages, BM25Config(depth=depth), progress=progress)
    pids = list(passages)
    for kind in (k for k in kinds if k != "bm25"):
        from reranker.teachers.members import load_member

        member = load_member(members[kind])
        qids = list(queries)
        scores = member.score(
            queries, passages, [(q, p) for q in qids for p in pids], progress=progress
        )  # each text encoded once
        run: Run = {}
        for n, qid in enumerate(qids):
            row = scores[n * len(pids) : (n + 1) * len(pids)]
            best = heapq.nlargest(depth, range(len(pids)), key=lambda i: float(row[i]))
            run[qid] = [(pids[i], float(row[i])) for i in best]
        runs[kind] = run
    return runs


def ship_first_stage_fusion(model_dir: str | Path, picks: Mapping[str, FusionRule], how: Mapping[str, Any]) -> ModelConfig:
    """Write ``picks`` (kind -> rule) into ``model_dir/config.json`` as ``first_stage_fusion`` (the
    other kinds' choices kept) with ``how`` they were picked in its manifest (see
    :func:`reranker.models.amend.amend_model_config`). ConfigError for an unknown kind."""
    from reranker.models.amend import amend_model_config

    current = ModelConfig.load(Path(model_dir) / "config.json").first_stage_fusion or {}
    new = {kind: {"rule": r.rule, "weight": r.weight, "rrf_k": r.rrf_k} for kind, r in picks.items()}
    choices = dict(sorted({**current, **new}.items()))
    return amend_model_config(model_dir, {"first_stage_fusion": choices}, "first_stage_fusion", how)


__all__ = ["KIND_MEMBERS", "first_stage_lists", "ship_first_stage_fusion"]
