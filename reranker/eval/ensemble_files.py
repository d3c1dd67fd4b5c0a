"""An ensemble teacher from its members' files: TREC runs or teacher score files in, the weighted
mean of their per-query z-scores out, in the same format, with a record of how it was made
(``OUT.ensemble.json``). What ``reranker ensemble`` runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reranker.data import Collection, ScoredTriple, read_run, read_scores, validation_queries, write_run, write_scores
from reranker.data._io import iter_lines
from reranker.errors import ConfigError, DataFormatError
from reranker.eval.ensemble import Normalize, PairScores, combine, mean_query_std, pick_weights

RECORD_SUFFIX = ".ensemble.json"
"""The record written next to an ensemble's output: ``OUT.ensemble.json``."""


def read_pair_scores(path: Path) -> tuple[str, PairScores, Any]:
    """('run' | 'scores', {(qid, pid): score}, the parsed file) of a TREC run or a teacher score file;
    :class:`DataFormatError` for anything else."""
    first = next((line.split() for _, line in iter_lines(path)), [])
    if len(first) == 6:
        run = read_run(path)
        return "run", {(q, p): s for q, cands in run.items() for p, s in cands}, run
    if len(first) == 5:
        scored = read_scores(path)
        pairs: PairScores = {}
        for t in scored:
            pairs[(t.qid, t.pos)] = t.pos_score
            pairs[(t.qid, t.neg)] = t.neg_score
        return "scores", pairs, scored
    raise DataFormatError(
        path, 1, f"expected a TREC run (6 columns) or a teacher score file (5 columns), found {len(first)} columns"
    )


def read_weights(record: Path) -> list[float]:
    """The weights of an earlier ensemble (its ``OUT.ensemble.json``)."""
    try:
        return [float(w) for w in json.loads(Path(record).read_text())["weights"]]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read ensemble weights from {record}: {exc}") from exc


@dataclass(frozen=True)
class EnsembleResult:
    """What :func:`build_ensemble` wrote and how it chose its weights."""

    out: str
    kind: str
    """``run`` or ``scores`` (the inputs' format)."""
    weights: list[float]
    scale: float
    normalize: str
    inputs: list[str]
    validation: dict[str, Any] = field(default_factory=dict)
    """With picked weights: the validation queries' count and the nDCG@10 of every weight vector."""
    weights_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_ensemble(
    inputs: Sequence[Path],
    out: Path,
    *,
    weights: Sequence[float] | None = None,
    weights_from: Path | None = None,
    pick_step: float | None = None,
    data: Sequence[Path] = (),
    val_fraction: float = 0.1,
    val_seed: int = 0,
    normalize: Normalize = "zscore",
    scale: float = 1.0,
    scale_like: int | None = None,
) -> EnsembleResult:
    """Combine the members' files into ``out`` (same format as the inputs) and write ``OUT.ensemble.json``.

    Weights are given (``weights``), reused (``weights_from``: an earlier record) or picked by nDCG@10
    on the validation split of ``data`` (``pick_step``: the grid step), never on a test set.
    ``scale_like`` (1-based): express the ensemble in that member's score units (its mean per-query
    standard deviation), as Margin-MSE is scale-sensitive. Raises :class:`ConfigError` for
    inconsistent options, :class:`DataFormatError` for unreadable files.
    """
    read = [read_pair_scores(Path(f)) for f in inputs]
    if len({kind for kind, _, _ in read}) != 1:
        raise ConfigError("the ensemble's inputs must all be runs or all be score files, not a mix")
    if sum(x is not None and x != [] for x in (weights, weights_from, pick_step)) > 1:
        raise ConfigError("give weights one way: given weights, an earlier record or a weight search")
    members = [pairs for _, pairs, _ in read]
    chosen = list(weights) if weights else None
    validation: dict[str, Any] = {}
    if weights_from is not None:
        chosen = read_weights(weights_from)
    if pick_step is not None:
        if not data:
            raise ConfigError("picking weights needs data folders with the judgments of the training queries")
        collection = Collection.open(list(data))
        queries = validation_queries(collection.qrels, val_fraction, val_seed) & {q for q, _ in members[0]}
        ranked = pick_weights(members, collection.qrels, queries, step=pick_step, normalize=normalize)
        chosen = list(ranked[0][0])
        validation = {
            "queries": len(queries),
            "metric": "ndcg@10",
            "grid": [{"weights": list(w), "ndcg@10": n} for w, n in ranked],
        }
    if scale_like is not None:
        if normalize != "zscore":
            raise ConfigError("scale_like needs zscore normalisation")
        if not 1 <= scale_like <= len(members):
            raise ConfigError(f"scale_like names member {scale_like}; there are {len(members)} (1-based)")
        scale = mean_query_std(members[scale_like - 1])
    combined = combine(members, chosen, normalize=normalize, scale=scale)
    kind, _, parsed = read[0]
    if kind == "run":
        write_run(out, {q: [(p, combined[(q, p)]) for p, _ in cands] for q, cands in parsed.items()}, tag="ensemble")
    else:
        write_scores(out, [ScoredTriple(t.qid, t.pos, t.neg, combined[(t.qid, t.pos)], combined[(t.qid, t.neg)]) for t in parsed])
    result = EnsembleResult(
        str(out),
        kind,
        chosen or [1.0] * len(members),
        scale,
        normalize,
        [str(f) for f in inputs],
        validation,
        str(weights_from) if weights_from else None,
    )
    Path(f"{out}{RECORD_SUFFIX}").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result
