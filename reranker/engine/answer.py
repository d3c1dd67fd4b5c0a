"""The end of the request path, shared by scored and cached answers: the request's fusion rule,
non-finite scores ranked last, the order, top_k and the output message."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from reranker.engine.config import AGGREGATES, FIRST_STAGE_TIER
from reranker.engine.messages import RerankInput, RerankOutput, Scored
from reranker.engine.served import ServedModel, StatsSink
from reranker.errors import ConfigError, InvalidInputError, quoted, some
from reranker.fusion import FusionRule, rule_for_first_stage

log = logging.getLogger("reranker.engine.engine")


def fusion_for(req: RerankInput, model: ServedModel) -> FusionRule:
    """The request's rule (its override, else the shipped choice for the first stage it names, else
    the model's); refuses a fusing request whose candidates do not all carry a finite first-stage score."""
    rule = req.fusion
    if rule is None and req.first_stage_kind:
        try:
            rule = rule_for_first_stage(model.first_stage_rules, req.first_stage_kind, model.name)
        except ConfigError as exc:
            raise InvalidInputError(str(exc)) from None
    rule = rule if rule is not None else model.fusion
    if not rule.active:
        return rule
    sent = [s for s in req.first_stage if s is not None]
    if len(req.first_stage) != len(req.ids) or len(sent) != len(req.ids):
        raise InvalidInputError(
            f"model {model.name} fuses its score with the first stage ({rule.describe()}): send first_stage_score "
            f"on every candidate ({len(sent)} of {len(req.ids)} have one), or set fusion.rule 'none' in the "
            "request to rank by the model's score alone"
        )
    if not all(math.isfinite(s) for s in sent):
        raise InvalidInputError("first_stage_score must be a finite number on every candidate (no NaN or infinity)")
    return rule


def validate(req: RerankInput, model: ServedModel) -> None:
    """Refuse what no cutting can serve (InvalidInputError says what and what is allowed); over-long
    candidate texts are cut or scored in windows, never refused."""
    limits = model.limits
    if not req.query.strip():
        raise InvalidInputError("the query is empty; send the text to rank the candidates against")
    if len(req.query) > limits.max_query_chars:
        raise InvalidInputError(f"the query has {len(req.query)} characters; at most {limits.max_query_chars} are allowed")
    if not req.ids:
        raise InvalidInputError(
            "no candidates: send at least one candidate (an id, and text unless the id is in the model's passage store)"
        )
    if len(req.ids) > limits.max_candidates:
        raise InvalidInputError(
            f"{len(req.ids)} candidates sent; model {model.name} takes at most "
            f"{limits.max_candidates} per request (split larger lists)"
        )
    if req.top_k < 0:
        raise InvalidInputError(f"top_k must be >= 0 (0 = all), got {req.top_k}")
    if req.min_relevance is not None:
        if not (math.isfinite(req.min_relevance) and 0.0 <= req.min_relevance <= 1.0):
            raise InvalidInputError(f"min_relevance must be in [0, 1] (a probability), got {req.min_relevance}")
        if model.calibration is None:
            raise InvalidInputError(f"model {model.name} has no calibration: its scores carry no relevance for min_relevance")
    if req.aggregate and req.aggregate not in AGGREGATES:
        raise InvalidInputError(
            f"aggregate {quoted(req.aggregate)} is not one of {', '.join(AGGREGATES)} "
            f"(empty = the model's, {model.limits.aggregate})"
        )
    fusion_for(req, model)


def replace_invalid(
    model: str, ids: Sequence[str], own: np.ndarray, sink: StatsSink, logged: set[tuple[str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The model's scores with NaN / infinity replaced by the lowest finite score (fusion sees only
    finite scores that leave the others' normalisation as it would be without the candidate; the
    caller ranks the replaced ones last), and the mask of those replaced; counted, and logged once
    per passage id (ids kept as at most 100 characters, up to 100,000 of them in ``logged``)."""
    invalid = ~np.isfinite(own)
    if invalid.any():
        finite = own[~invalid]
        own = own.copy()
        own[invalid] = float(finite.min()) if finite.size else 0.0
        bad = [ids[i] for i in np.flatnonzero(invalid).tolist()]
        sink.invalid_scores(model, len(bad))
        new = [pid for pid in bad if (model, pid[:100]) not in logged]
        if new and len(logged) < 100_000:
            logged.update((model, pid[:100]) for pid in new)
            log.warning("model %s scored %d candidate(s) NaN or infinite (damaged stored state?): %s", model, len(new), some(new))
        elif new:
            log.warning("model %s scored %d more candidate(s) NaN or infinite", model, len(new))
    return own, invalid


def answer(
    model: ServedModel,
    req: RerankInput,
    own: np.ndarray,
    invalid: np.ndarray,
    flags: Sequence[tuple[bool, bool, int]],
    *,
    queue_s: float,
    inference_s: float,
    started: float,
) -> RerankOutput:
    """The output of ``req``: ``own`` (finite) model scores and ``invalid`` (replaced ones) per candidate,
    ``flags`` (truncated, from the store, windows scored) per candidate, fused by the request's rule, ordered, cut to top_k."""
    rule = fusion_for(req, model)
    scores = (
        np.array(rule.fuse(own.tolist(), [float(s) for s in req.first_stage if s is not None]), dtype=np.float64)
        if rule.active
        else own
    )
    order = np.lexsort((-scores, invalid))  # by score, invalid candidates last (stable on ties)
    relevance, below = None, 0
    if model.calibration is not None:
        tokens = len(model.prepare.prep.tokenizer.word_pieces([req.query])[0]) if model.calibration.per_query_token else 1
        relevance = model.calibration.relevance(own, tokens)
        relevance[invalid] = 0.0
        if req.min_relevance is not None:
            kept = order[relevance[order] >= req.min_relevance]
            below, order = len(order) - len(kept), kept
    if req.top_k:
        order = order[: req.top_k]
    out = [
        Scored(
            req.ids[i],
            int(i),
            float(scores[i]),
            flags[i][0],
            flags[i][1],
            float(own[i]),
            bool(invalid[i]),
            None if relevance is None else float(relevance[i]),
            flags[i][2],
        )
        for i in order.tolist()
    ]
    truncated = sum(f[0] for f in flags)
    return RerankOutput(
        model.name,
        out,
        queue_ms=queue_s * 1000.0,
        inference_ms=inference_s * 1000.0,
        total_ms=(time.monotonic() - started) * 1000.0,
        stats={
            "candidates": len(flags),
            "truncated": truncated,
            "invalid": int(invalid.sum()),
            "below_min_relevance": below,
            "windows": sum(f[2] for f in flags),
        },
        scored_by=model.name,
    )


def first_stage_answer(name: str, req: RerankInput, started: float) -> RerankOutput:
    """A cascade's first-stage tier: the candidates by their first-stage scores when every one has a
    finite score, else in the order they were sent (score = minus the position); top_k applies,
    fusion does not. There is no relevance: a request with ``min_relevance`` gets no results (every
    candidate counted below it), never candidates the filter did not see."""
    sent = [s for s in req.first_stage if s is not None and math.isfinite(s)]
    if len(sent) == len(req.ids):
        scores = np.asarray(sent, dtype=np.float64)
    else:
        scores = -np.arange(len(req.ids), dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    below = len(order) if req.min_relevance is not None else 0
    if below:
        order = order[:0]
    if req.top_k:
        order = order[: req.top_k]
    results = [Scored(req.ids[i], int(i), float(scores[i]), False, False, float(scores[i]), windows=0) for i in order.tolist()]
    return RerankOutput(
        name,
        results,
        total_ms=(time.monotonic() - started) * 1000.0,
        stats={"candidates": len(req.ids), "truncated": 0, "invalid": 0, "below_min_relevance": below, "windows": 0},
        scored_by=FIRST_STAGE_TIER,
    )
