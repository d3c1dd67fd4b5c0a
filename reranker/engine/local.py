"""The engine in process, with a synchronous face: for tests, benchmarks and tools.

It runs :meth:`Engine.rerank`, the request path serving uses (pre stage, batcher, core stage),
on an event loop of its own in a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from reranker.engine.config import EngineConfig, ModelSpec
from reranker.engine.engine import Engine
from reranker.engine.messages import RerankInput, RerankOutput
from reranker.engine.served import StatsSink
from reranker.fusion import FusionRule

T = TypeVar("T")


class LocalEngine:
    """An :class:`Engine` built from ``cfg`` (and warmed up when ``cfg.warmup``); close it after use."""

    def __init__(self, cfg: EngineConfig, sink: StatsSink | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reranker-local", daemon=True)
        self._thread.start()
        try:
            self.engine = Engine.from_config(cfg, sink)
            if cfg.warmup:
                self._call(self.engine.warm_up())
        except BaseException:
            self._stop_loop()
            raise

    @classmethod
    def of(cls, artifact: str, store: str = "", **engine: Any) -> LocalEngine:
        """One model (named ``default``) from an artifact directory and an optional store."""
        return cls(EngineConfig(models=(ModelSpec("default", str(artifact), str(store) if store else ""),), **engine))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def rerank(
        self,
        query: str,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        model: str = "",
        top_k: int = 0,
        first_stage: Sequence[float | None] = (),
        fusion: FusionRule | None = None,
        first_stage_kind: str = "",
        aggregate: str = "",
    ) -> RerankOutput:
        """:meth:`Engine.rerank` for one request; ``texts`` default to empty (look every id up);
        ``first_stage`` scores, a ``fusion`` override, the ``first_stage_kind`` and the ``aggregate`` of
        long texts' windows as in :class:`RerankInput`."""
        texts = list(texts) if texts is not None else [""] * len(ids)
        req = RerankInput(query, list(ids), texts, model, top_k, list(first_stage), fusion, first_stage_kind, aggregate=aggregate)
        return self._call(self.engine.rerank(req))

    def scores(
        self, query: str, ids: Sequence[str], texts: Sequence[str] | None = None, *, model: str = "", aggregate: str = ""
    ) -> tuple[list[float], list[bool]]:
        """Scores and truncation flags of every candidate in input order (not sorted)."""
        out = self.rerank(query, ids, texts, model=model, aggregate=aggregate)
        scores, truncated = [0.0] * len(ids), [False] * len(ids)
        for r in out.results:
            scores[r.index], truncated[r.index] = r.score, r.truncated
        return scores, truncated

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def close(self) -> None:
        """Let queued work finish, then stop the loop."""
        if self._loop.is_closed():
            return
        self._call(self.engine.close())
        self._stop_loop()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
