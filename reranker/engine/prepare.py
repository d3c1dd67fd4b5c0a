"""The engine's pre stage: tokenise, encode the query once, look passages up in the store, encode
passages sent as text; plus the array helpers the core stage needs (batch planning, padding).

This is CPU work that runs on the engine's bounded pre pool, overlapping the previous batch's
inference. The same code encodes passages for a store build (:func:`reranker.engine.passage_encoder`),
so a stored state is exactly what serving would compute from the text.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from reranker.arch import ArchSpec
from reranker.engine.batcher import BatcherConfig
from reranker.engine.config import Limits
from reranker.engine.items import PassageItem, Passages, QueryItem, Windowing
from reranker.errors import ConfigError, InvalidInputError, NotFoundError, StoreDamagedError, some
from reranker.runtime import OnnxScorer
from reranker.store import PassageStore
from reranker.tokenization import Encoded, Preprocessor

log = logging.getLogger(__name__)


def plan_batches(lengths: Sequence[int], max_pairs: int, max_tokens: int) -> list[np.ndarray]:
    """Group item indices into batches by length: at most ``max_pairs`` items and at most
    ``max_tokens`` padded tokens (items x longest) per batch; an item longer than the token budget
    runs alone.

    >>> [b.tolist() for b in plan_batches([5, 1, 9, 2], max_pairs=2, max_tokens=100)]
    [[1, 3], [0, 2]]
    >>> [b.tolist() for b in plan_batches([5, 1, 9, 2], max_pairs=8, max_tokens=10)]
    [[1, 3], [0], [2]]
    """
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_pairs and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_rows(rows: Sequence[np.ndarray], fill: float = 0, dtype: np.dtype | type | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned padding of (length, ...) arrays into (batch, longest, ...) plus an int64 mask.

    One gather and one (converting) copy for the whole batch, not one per row; a row repeated for
    every pair (the query of a request) is broadcast.

    >>> out, mask = pad_rows([np.array([1, 2]), np.array([3])], fill=0)
    >>> out.tolist(), mask.tolist()
    ([[1, 2], [3, 0]], [[1, 1], [1, 0]])
    >>> q = np.array([5, 6])
    >>> pad_rows([q, q], fill=0)[0].tolist()
    [[5, 6], [5, 6]]
    """
    first = rows[0]
    dtype = dtype or np.result_type(*{r.dtype for r in rows})
    if all(r is first for r in rows):
        out = np.empty((len(rows), *first.shape), dtype=dtype)
        out[:] = first
        return out, np.ones((len(rows), first.shape[0]), dtype=np.int64)
    lengths = np.fromiter((r.shape[0] for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    real = np.arange(width) < lengths[:, None]
    out = np.full((len(rows), width, *first.shape[1:]), fill, dtype=dtype)
    out[real] = np.concatenate(rows)
    return out, real.astype(np.int64)


class Prepare:
    """Pre stage of one model: text -> items, stored states by id, within the batching budget."""

    def __init__(
        self,
        arch: ArchSpec,
        prep: Preprocessor,
        scorer: OnnxScorer,
        budget: BatcherConfig,
        store: PassageStore | None = None,
        limits: Limits | None = None,
        collection: Mapping[str, str] | None = None,
    ) -> None:
        if store is not None and not arch.split:
            raise ConfigError(f"a {arch.name} model cannot use a passage store: it has no passage-side state")
        self.arch, self.prep, self.scorer, self.budget = arch, prep, scorer, budget
        self.window_plan = Windowing.of(limits or Limits(), self.passage_token_limit, arch.name)
        """How texts longer than the model's passage length are scored (:class:`Windowing`)."""
        self.pieces_per_char = 0.25
        """Running word pieces per character of candidate texts (English: about 0.22)."""
        self.collection = collection or {}
        """Passage text by id for candidates sent by id without text that the store does not hold."""
        self.from_codes = False
        """Stored candidates are scored from the store's codes (MaxSim without decoding, on CPU): the
        items of stored passages hold their token rows (:attr:`PassageItem.coded`)."""
        self.store: PassageStore | None = None
        if store is not None:
            self.attach(store)

    def attach(self, store: PassageStore) -> None:
        """Score stored candidates from ``store`` from now on (a store built while serving)."""
        codes = bool(self.arch.maxsim and self.scorer.on_cpu and getattr(store, "scores_codes", False))
        if codes:
            started = time.monotonic()
            try:
                if getattr(store, "precomputed_norms", True):
                    store.inverse_norms()
            except StoreDamagedError as exc:  # decoded instead: a lookup then names the damaged passages
                log.error("passage store %s: %s; its vectors are decoded, not scored from the codes", store.directory, exc)
                codes = False
            else:
                seconds = time.monotonic() - started
                log.info("scoring from the store's codes: %d token norms in %.1f s", int(store.offsets[-1]), seconds)
        self.store, self.from_codes = store, codes  # requests read both (the store first)

    def texts_of(self, ids: Sequence[str], texts: Sequence[str]) -> list[str]:
        """The request's texts, the collection's text filled in for ids sent without text that the
        store does not hold (ids it lacks keep an empty text: :meth:`passages` names them)."""
        if not self.collection:
            return list(texts)
        return [t or ("" if self.stored(p) else self.collection.get(p, "")) for p, t in zip(ids, texts, strict=True)]

    @property
    def query_token_limit(self) -> int:
        """Word pieces a query may have (queries are never truncated)."""
        return self.prep.query_token_limit

    @property
    def passage_token_limit(self) -> int:
        """Word pieces of a passage the model reads (longer texts are cut and flagged)."""
        return self.prep.passage_token_limit

    def query(self, text: str) -> QueryItem:
        """Tokenise (and for split models encode) a query; :class:`InvalidInputError` when it has no
        word pieces or more than :attr:`query_token_limit`."""
        enc = self.prep.queries([text])
        if enc.lengths[0] == 0:
            raise InvalidInputError(
                "the query has no word pieces this model can read (only spaces, control or "
                "unknown characters); send a query with text"
            )
        if enc.truncated[0]:
            raise InvalidInputError(
                f"the query has {int(enc.lengths[0])} word pieces; this {self.arch.name} model "
                f"allows at most {self.query_token_limit} (queries are never truncated)"
            )
        if not self.arch.split:
            return QueryItem(enc.input_ids[0, : int(enc.attention_mask[0].sum())])
        vectors, mask = self.scorer.encode_query(enc.input_ids, enc.attention_mask)
        return QueryItem(vectors[0, : int(mask[0].sum())])

    def texts(self, texts: Sequence[str], check: Callable[[], None] | None = None) -> list[PassageItem]:
        """Passage items from text cut at the model's passage length (what a store holds): ids for the
        cross-encoder, else the passage encoder's state, encoded in length-sorted batches of the
        budget; ``check`` runs before each batch (it raises to stop abandoned work)."""
        return self._items(self.prep.passages(texts), check)

    def _items(self, enc: Encoded, check: Callable[[], None] | None) -> list[PassageItem]:
        lengths = enc.attention_mask.sum(1)
        if not self.arch.split:
            return [PassageItem(enc.input_ids[i, : lengths[i]], bool(enc.truncated[i]), False) for i in range(len(lengths))]
        items: list[PassageItem | None] = [None] * len(lengths)
        for batch in plan_batches(lengths.tolist(), self.budget.max_batch_size, self.budget.max_batch_cost):
            if check is not None:
                check()
            width = int(lengths[batch].max())
            vectors, mask = self.scorer.encode_passages(enc.input_ids[batch, :width], enc.attention_mask[batch, :width])
            for row, i in enumerate(batch.tolist()):
                items[i] = PassageItem(vectors[row, : int(mask[row].sum())], bool(enc.truncated[i]), False)
        return items  # type: ignore[return-value]

    def windowing(self, aggregate: str, query: str = "") -> Windowing:
        """The windowing for an aggregate: the model's, or for ``first`` one window of the model's
        passage length (truncation). A model that packs query and passage into one sequence of
        ``pair_max_len`` tokens (imported cross-encoders) reads of the passage only what is left beside
        the query: given the ``query``, windows shrink to that, so that none is cut."""
        plan = self.window_plan
        if aggregate == "first":  # one window: the first passage length of the text
            return dataclasses.replace(plan, per_candidate=1)
        if query and self.arch.packs_pair and self.prep.config.pair_max_len:
            room = max(1, self.prep.config.passage_max_len + 1 - len(self.prep.tokenizer.word_pieces([query])[0]))
            if room < plan.limit:
                size = min(plan.size, room)
                return dataclasses.replace(plan, size=size, stride=min(plan.stride, size), limit=room)
        return plan

    def windows(
        self, texts: Sequence[str], windowing: Windowing, check: Callable[[], None] | None = None
    ) -> tuple[list[list[PassageItem]], list[bool]]:
        """Each text's windows as passage items (:meth:`texts` of every window) and whether text was
        left unread after the last window granted (:meth:`Windowing.allot`)."""
        pieces = self.prep.tokenizer.word_pieces(texts)
        chars = sum(map(len, texts))
        if chars:  # running word pieces per character: the admission estimate of windows
            self.pieces_per_char += 0.1 * (sum(map(len, pieces)) / chars - self.pieces_per_char)
        granted = windowing.allot([windowing.count(len(p)) for p in pieces])
        rows: list[Sequence[int]] = []
        unread: list[bool] = []
        for p, g in zip(pieces, granted, strict=True):
            spans = windowing.spans(len(p), g)
            rows.extend(p[start:end] for start, end in spans)
            unread.append(spans[-1][1] < len(p))
        items = iter(self._items(self.prep.passage_pieces(rows), check))
        return [[next(items) for _ in range(g)] for g in granted], unread

    def estimate(self, ids: Sequence[str], texts: Sequence[str], aggregate: str) -> tuple[int, int]:
        """(pairs, encodes) a request will cost: windows scored, and windows the pre stage must encode
        from text (split models), estimated from the characters of each text (no tokenising here)."""
        windowing, ratio = self.windowing(aggregate), self.pieces_per_char
        # 0: a stored candidate or an id without text (one pair, nothing to encode)
        wanted = [
            0 if not text or self.stored(pid) else windowing.count(len(text) * ratio)
            for pid, text in zip(ids, texts, strict=True)
        ]
        granted = windowing.allot([max(w, 1) for w in wanted])
        from_text = sum(g for g, w in zip(granted, wanted, strict=True) if w)
        pairs = from_text + wanted.count(0)
        return pairs, from_text if self.arch.split else 0

    def stored(self, pid: str) -> bool:
        """Whether the passage store holds ``pid`` (its stored state is then what is scored)."""
        return self.store is not None and bool(pid) and pid in self.store

    def passages(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        aggregate: str,
        check: Callable[[], None] | None = None,
        query: str = "",
    ) -> Passages:
        """Stored state for ids in the passage store (a text sent with a stored id is not used); the
        text's windows (encoded now, ``check`` before each batch; sized to fit beside ``query`` for a
        pair-packing model) for the others. :class:`NotFoundError` names the candidates with neither."""
        items: list[list[PassageItem]] = [[] for _ in ids]
        truncated = [False] * len(ids)
        to_encode: list[int] = []
        missing: list[str] = []
        stored: list[int] = []
        for i, (pid, text) in enumerate(zip(ids, texts, strict=True)):
            if self.stored(pid):
                stored.append(i)
            elif text:
                to_encode.append(i)
            else:
                missing.append(pid)
        if missing:
            where = "in the passage store" if self.store is not None else "stored (this model has no passage store)"
            where += " nor in the model's passages" if self.collection else ""
            raise NotFoundError(f"{len(missing)} candidate(s) have no text and are not {where}: {some(missing)}")
        if stored:  # one decode for all stored candidates (compressed stores decode in one pass)
            store, codes = self.store, self.from_codes
            assert store is not None
            pids = [ids[i] for i in stored]
            states = store.token_rows(pids) if codes else store.get_many(pids)
            for i, state in zip(stored, states, strict=True):
                items[i] = [PassageItem(state, store.is_truncated(ids[i]), True, coded=codes)]
                truncated[i] = items[i][0].truncated
        encoded = 0
        if to_encode:
            windowing = self.windowing(aggregate, query)  # stored candidates take one window each of the request's
            windowing = dataclasses.replace(windowing, per_request=max(1, windowing.per_request - len(stored)))
            windows, unread = self.windows([texts[i] for i in to_encode], windowing, check)
            for i, its, cut in zip(to_encode, windows, unread, strict=True):
                items[i], truncated[i] = its, cut
                encoded += len(its)
        from_store = [False] * len(ids)
        for i in stored:
            from_store[i] = True
        counts = np.fromiter((len(its) for its in items), dtype=np.int64, count=len(items))
        flat = [item for its in items for item in its]
        return Passages(flat, counts, truncated, from_store, encoded if self.arch.split else 0)

    def pad_pairs(
        self, queries: Sequence[QueryItem], passages: Sequence[PassageItem]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The scorer's four input arrays for a batch of pairs (ids padded with [PAD], states with 0;
        stored fp16 states stay fp16 if every passage of the batch is stored, else become fp32)."""
        if not self.arch.split:
            pad = self.prep.tokenizer.pad_id
            return (*pad_rows([q.data for q in queries], pad), *pad_rows([p.data for p in passages], pad))
        # states stay in their dtype (fp16 from the store): the runtime casts them, faster than numpy
        return (*pad_rows([q.data for q in queries], 0.0), *pad_rows([p.data for p in passages], 0.0))
