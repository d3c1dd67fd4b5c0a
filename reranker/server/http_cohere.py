"""The Cohere v1 / v2 and Jina ``/rerank`` shapes: their request as the engine's input, the engine's
answer as theirs (with the reranker extensions the schemas in :mod:`reranker.server.http_schemas` list)."""

from __future__ import annotations

import uuid
from typing import Any

from reranker.engine import Engine, RerankInput, RerankOutput
from reranker.errors import InvalidInputError
from reranker.server import http_schemas as s


def cohere_input(body: s.CohereRerankRequest, engine: Engine) -> tuple[RerankInput, list[str | None]]:
    """The engine's input from a Cohere / Jina body, and each document's text (None: by id only)."""
    ids: list[str] = []
    texts: list[str] = []
    firsts: list[float | None] = []
    for i, doc in enumerate(body.documents):
        if isinstance(doc, str):
            ids.append("")  # no id: never looked up in the store
            texts.append(doc)
            firsts.append(None)
        else:
            if doc.text is None and not doc.id:
                raise InvalidInputError(f"document {i} has neither 'text' nor 'id'; send one of them")
            ids.append(doc.id or "")
            texts.append(doc.text or "")
            firsts.append(doc.first_stage_score)
    fusion = None
    if body.fusion is not None:
        base = engine.base_fusion(body.model or "", body.first_stage or "")
        fusion = base.override(body.fusion.rule, body.fusion.weight)
    first = firsts if any(f is not None for f in firsts) else []
    kind = body.first_stage or ""
    inp = RerankInput(
        body.query,
        ids,
        texts,
        body.model or "",
        body.top_n or 0,
        first,
        fusion,
        kind,
        body.min_relevance,
        body.aggregate or "",
        tier=body.tier or "",
        no_fallback=body.no_fallback,
    )
    return inp, [t if t else None for t in texts]


def cohere_answer(out: RerankOutput, texts: list[str | None], with_documents: bool, version: str) -> dict[str, Any]:
    """The Cohere / Jina answer (:class:`http_schemas.CohereRerankResponse`) as plain data."""
    results = []
    for r in out.results:
        item: dict[str, Any] = {
            "index": r.index,
            # a calibrated model's probability where its own score orders the results (no fusion)
            "relevance_score": r.relevance if r.relevance is not None and r.score == r.model_score else r.score,
            "model_score": r.model_score,
            "truncated": r.truncated,
            "source": "store" if r.from_store else "text",
            "invalid_score": r.invalid,
            "windows": r.windows,
        }
        if r.relevance is not None:
            item["relevance"] = r.relevance
        if r.id:
            item["id"] = r.id
        if with_documents and texts[r.index]:
            item["document"] = {"text": texts[r.index]}
        results.append(item)
    return {
        "id": str(uuid.uuid4()),
        "model": out.model,
        "results": results,
        "below_min_relevance": out.stats.get("below_min_relevance", 0),
        "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
        "usage": {"total_tokens": 0},
        "timing": {"queue_ms": out.queue_ms, "inference_ms": out.inference_ms, "total_ms": out.total_ms},
        "scored_by": out.scored_by,
        "reason": out.reason,
    }
