"""The deadline-aware cascade: which tier of a :class:`CascadeSpec` scores a request, and why.

The most effective tier estimated to answer before the deadline (less a reserve) scores; a tier
refused for capacity, or (with a first-stage tier after it) still running at the deadline less the
reserve, gives way to the next. Estimates are the admission's: the admitted work ahead plus the
request's own, from running per-pair and per-encode costs, times the running ratio of answer times
to estimates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from typing import Protocol

from reranker.engine.admission import Admission
from reranker.engine.answer import first_stage_answer
from reranker.engine.config import FIRST_STAGE_TIER, CascadeSpec
from reranker.engine.messages import RerankInput, RerankOutput
from reranker.engine.served import ServedModel, StatsSink
from reranker.errors import CapacityError, DeadlineError, InvalidInputError, quoted


class Host(Protocol):
    """What a cascade needs of the engine that serves it."""

    @property
    def models(self) -> Mapping[str, ServedModel]: ...

    @property
    def admission(self) -> Admission: ...

    @property
    def sink(self) -> StatsSink: ...

    def validate(self, req: RerankInput, model: ServedModel) -> None: ...

    async def rerank_model(self, req: RerankInput, deadline: float | None) -> RerankOutput: ...


def estimate_s(admission: Admission, model: ServedModel, req: RerankInput) -> float:
    """Seconds from now until ``model`` would answer ``req``: the admitted work ahead and the request's
    own, from the running unit costs, scaled by the admission's calibration; with no work ahead, not
    scaled up (so that an idle engine tries the tier, and its answer calibrates the scale again,
    instead of passing it over for ever on an estimate from a busier time)."""
    texts = model.prepare.texts_of(req.ids, req.texts)  # ids without text: the model's passages
    pairs, encodes = model.prepare.estimate(req.ids, texts, req.aggregate or model.limits.aggregate)
    scale = admission.scale if admission.outstanding else min(1.0, admission.scale)
    return (admission.ahead_s + model.costs.estimate(pairs, encodes)) * scale


async def run_cascade(host: Host, cascade: CascadeSpec, req: RerankInput, deadline: float | None) -> RerankOutput:
    """Score ``req`` by the tier ``cascade`` picks (``req.tier`` pins one, ``req.no_fallback`` allows
    only the first). The request is validated against every model tier first, so that its errors do
    not depend on the load. The answer's ``scored_by`` and ``reason`` say which tier scored and why.
    Raises what the last tier tried raises; InvalidInputError for a tier the cascade does not have."""
    started = time.monotonic()
    if req.tier and req.tier not in cascade.tiers:
        raise InvalidInputError(
            f"tier {quoted(req.tier)} is not one of cascade {cascade.name}'s tiers: {', '.join(cascade.tiers)}"
        )
    subs = {t: dataclasses.replace(req, model=t, tier="", no_fallback=False) for t in cascade.models}
    for tier, sub in subs.items():
        host.validate(sub, host.models[tier])
    tiers = (req.tier,) if req.tier else cascade.tiers[:1] if req.no_fallback else cascade.tiers
    reserve = cascade.reserve_ms / 1000.0
    if deadline is not None:
        reserve += cascade.reserve_share * max(0.0, deadline - started)
    passed: list[str] = []
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        if tier == FIRST_STAGE_TIER:
            out = first_stage_answer(cascade.name, req, started)
            return _tiered(host, cascade, out, passed, "pinned" if req.tier else "the candidates' first-stage order")
        model = host.models[tier]
        if deadline is not None and not last:
            need, left = estimate_s(host.admission, model, subs[tier]), deadline - time.monotonic() - reserve
            if need > left:
                passed.append(f"{tier} would answer in about {need * 1000:.0f} ms, {max(0.0, left) * 1000:.0f} ms were left")
                continue
        # with the first stage after it, a tier is given until the deadline less the reserve (a batch
        # already running is not waited for: its answer is dropped and the first stage answers)
        late = deadline - reserve if deadline is not None and FIRST_STAGE_TIER in tiers[i + 1 :] else None
        try:
            if late is None:
                out = await host.rerank_model(subs[tier], deadline)
            else:
                out = await asyncio.wait_for(host.rerank_model(subs[tier], late), max(0.0, late - time.monotonic()))
        except CapacityError as exc:
            if last:
                raise
            passed.append(f"{tier} was refused ({exc})")
            continue
        except (DeadlineError, TimeoutError):
            if late is None:
                raise
            passed.append(f"{tier} was still running {reserve * 1000:.0f} ms before the deadline")
            continue
        out.model = cascade.name
        return _tiered(host, cascade, out, passed, "pinned" if req.tier else "estimated to answer in time")
    raise AssertionError("unreachable: the last tier answers or raises")  # pragma: no cover


def _tiered(host: Host, cascade: CascadeSpec, out: RerankOutput, passed: list[str], why: str) -> RerankOutput:
    out.reason = "; ".join([*passed, f"{out.scored_by}: {why}"])
    host.sink.cascade(cascade.name, out.scored_by)
    return out
