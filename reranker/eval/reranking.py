"""Re-ranking a data folder's run and measuring it, and picking a first-stage fusion rule on the
validation split: what ``reranker evaluate`` and ``reranker pick-fusion`` run, callable without
a command line. Scores come in as ``{(qid, pid): score}`` (a model's, computed by the caller or
read from an earlier re-ranked run), so this module needs no model and no torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reranker.data import DataFolder, read_run
from reranker.errors import ConfigError, NotFoundError
from reranker.eval.irm import evaluate_with_ir_measures
from reranker.eval.metrics import evaluate_run, rel_level_for
from reranker.fusion import FusionRule, fuse_run

Candidates = dict[str, list[tuple[str, float]]]
"""{qid: [(pid, first-stage score), ...]} in first-stage order."""


def candidates_of(folder: DataFolder, run: str, depth: int) -> tuple[str, Candidates]:
    """(run name, each query's top-``depth`` candidates) of a run of ``folder`` or of a TREC run file."""
    if Path(run).is_file():
        return str(run), {q: c[:depth] for q, c in read_run(run).items() if q in folder.queries}
    name = folder.resolve_run(run)
    return name, {q: c[:depth] for q, c in folder.run(name).items()}


def scores_from_run(path: Path, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """A model's scores of ``pairs`` read from a re-ranked run it wrote earlier; NotFoundError names
    a pair the run lacks."""
    known = {(q, p): s for q, cands in read_run(path).items() for p, s in cands}
    missing = [k for k in pairs if k not in known]
    if missing:
        raise NotFoundError(
            f"{path} lacks {len(missing)} of the {len(pairs)} candidates (e.g. {missing[0]}); score them with the model instead"
        )
    return {k: known[k] for k in pairs}


@dataclass(frozen=True)
class Evaluation:
    """A re-ranked run and its metrics (ir-measures: nDCG@10, MRR@10 and R@100 at ``relevance_level``)."""

    model: str
    run: str
    depth: int
    relevance_level: int
    queries: int
    metrics: dict[str, float]
    reranked: Candidates = field(repr=False)
    fusion: FusionRule = field(default_factory=FusionRule)
    without_fusion: dict[str, float] = field(default_factory=dict)
    """With a fusion rule: the model's metrics alone."""
    first_stage: dict[str, float] = field(default_factory=dict)
    """With a fusion rule: the first stage's metrics alone."""

    def record(self) -> dict[str, Any]:
        """The JSON record ``reranker evaluate --json`` writes."""
        extra: dict[str, Any] = {}
        if self.fusion.active:
            extra = {
                "fusion": {"rule": self.fusion.rule, "weight": self.fusion.weight, "rrf_k": self.fusion.rrf_k},
                "without_fusion": self.without_fusion,
                "first_stage": self.first_stage,
            }
        return {
            "model": self.model,
            "run": self.run,
            "depth": self.depth,
            "relevance_level": self.relevance_level,
            "queries": self.queries,
            **self.metrics,
            **extra,
        }


def evaluate_reranking(
    folder: DataFolder,
    run: str,
    candidates: Candidates,
    scores: Mapping[tuple[str, str], float] | None,
    model: str,
    rule: FusionRule | None = None,
    depth: int = 100,
) -> Evaluation:
    """Re-rank ``candidates`` by ``scores`` (None: keep the first stage's order), fused with the first
    stage by ``rule``, and measure against the folder's qrels. NotFoundError when no query is judged."""
    rule = rule or FusionRule()
    qrels = {q: folder.qrels[q] for q in candidates if q in folder.qrels}
    if not qrels:
        raise NotFoundError(f"{folder.name} has no judgments for the queries of {run}")
    rel = rel_level_for(qrels)
    if scores is None:
        return Evaluation(
            f"{run} (first stage)", run, depth, rel, len(qrels), evaluate_with_ir_measures(qrels, candidates, rel), candidates
        )
    reranked = fuse_run(candidates, scores, rule)
    name = model + (f" fused with {run} ({rule.describe()})" if rule.active else "")
    alone = first = {}
    if rule.active:
        alone = evaluate_with_ir_measures(qrels, fuse_run(candidates, scores, FusionRule()), rel)
        first = evaluate_with_ir_measures(qrels, candidates, rel)
    return Evaluation(
        name, run, depth, rel, len(qrels), evaluate_with_ir_measures(qrels, reranked, rel), reranked, rule, alone, first
    )


@dataclass(frozen=True)
class FusionChoice:
    """The fusion rule picked on validation queries, and the grid it was picked from."""

    picked: FusionRule
    ndcg: float
    """Validation nDCG@10 of the picked rule."""
    model_alone: float
    first_stage: float
    queries: list[str]
    grid: list[tuple[FusionRule, float]]

    def record(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "metric": "ndcg@10",
            "model_alone": self.model_alone,
            "first_stage": self.first_stage,
            "picked": {"rule": self.picked.rule, "weight": self.picked.weight, "rrf_k": self.picked.rrf_k, "ndcg@10": self.ndcg},
            "grid": [{"rule": r.rule, "weight": r.weight, "ndcg@10": n} for r, n in self.grid],
        }


def pick_fusion(
    folder: DataFolder,
    candidates: Candidates,
    scores: Mapping[tuple[str, str], float],
    rules: Sequence[str] = ("minmax", "zscore", "rrf"),
    step: float = 0.05,
    rrf_k: float = 60.0,
) -> FusionChoice:
    """Grid-search each rule's weight (0..1 by ``step``) by nDCG@10 over ``candidates`` (the validation
    queries: never a test set); ties go to the weight nearest 0.5. ConfigError for a bad step."""
    if not 0 < step <= 0.5:
        raise ConfigError(f"the weight grid step must be in (0, 0.5], got {step}")
    qrels = {q: folder.qrels[q] for q in candidates if folder.qrels.get(q)}
    if not qrels:
        raise NotFoundError("no candidate query has judgments: pick on validation queries with qrels")
    rel = rel_level_for(qrels)
    steps = round(1 / step)
    grid = [
        (r, evaluate_run(qrels, fuse_run(candidates, scores, r), rel_level=rel)["ndcg@10"])
        for rule in rules
        for r in (FusionRule(rule, i / steps, rrf_k) for i in range(steps + 1))
    ]
    best = max(n for _, n in grid)
    picked = min((r for r, n in grid if n >= best - 1e-12), key=lambda r: (abs(r.weight - 0.5), r.rule))
    alone = evaluate_run(qrels, fuse_run(candidates, scores, FusionRule()), rel_level=rel)["ndcg@10"]
    first = evaluate_run(qrels, candidates, rel_level=rel)["ndcg@10"]
    return FusionChoice(picked, best, alone, first, sorted(qrels), grid)
