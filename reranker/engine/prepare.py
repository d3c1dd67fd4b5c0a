"""The engine's pre stage: tokenise, encode the query once, look passages up in the store, encode
passages sent as text; plus the array helpers the core stage needs (batch planning, padding).

This is CPU work that runs on the engine's bounded pre pool, overlapping the previous batch's
inference. The same code encodes passages for a store build (:func:`reranker.engine.passage_encoder`),
so a stored state is exactly what serving would compute from the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reranker.arch import ArchSpec
from reranker.engine.batcher import BatcherConfig
from reranker.errors import ConfigError, InvalidInputError, NotFoundError, some
from reranker.runtime import OnnxScorer
from reranker.store import PassageStore
from reranker.tokenization import Preprocessor


@dataclass(frozen=True)
class QueryItem:
    """A prepared query: token ids (cross-encoder) or its encoded state (split models)."""

    data: np.ndarray
    """(length,) int64 ids or (length, dim) float state, without padding."""

    @property
    def length(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True)
class PassageItem:
    """A prepared passage: token ids (cross-encoder) or its state, from the store or from text."""

    data: np.ndarray
    """(length,) int64 ids or (length, dim) float state, without padding."""
    truncated: bool
    """The passage text was longer than the model's passage length."""
    from_store: bool
    """The state came from the passage store (no encoding at query time)."""

    @property
    def length(self) -> int:
        return int(self.data.shape[0])


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
        self, arch: ArchSpec, prep: Preprocessor, scorer: OnnxScorer, budget: BatcherConfig, store: PassageStore | None = None
    ) -> None:
        if store is not None and not arch.split:
            raise ConfigError(f"a {arch.name} model cannot use a passage store: it has no passage-side state")
        self.arch, self.prep, self.scorer, self.budget, self.store = arch, prep, scorer, budget, store

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
        """Passage items from text: ids for the cross-encoder, else the passage encoder's state,
        encoded in length-sorted batches of the budget; ``check`` runs before each batch (it raises to
        stop abandoned work)."""
        enc = self.prep.passages(texts)
        lengths = enc.attention_mask.sum(1)
        if not self.arch.split:
            return [PassageItem(enc.input_ids[i, : lengths[i]], bool(enc.truncated[i]), False) for i in range(len(texts))]
        items: list[PassageItem | None] = [None] * len(texts)
        for batch in plan_batches(lengths.tolist(), self.budget.max_batch_size, self.budget.max_batch_cost):
            if check is not None:
                check()
            width = int(lengths[batch].max())
            vectors, mask = self.scorer.encode_passages(enc.input_ids[batch, :width], enc.attention_mask[batch, :width])
            for row, i in enumerate(batch.tolist()):
                items[i] = PassageItem(vectors[row, : int(mask[row].sum())], bool(enc.truncated[i]), False)
        return items  # type: ignore[return-value]

    def needs_encoding(self, ids: Sequence[str], texts: Sequence[str]) -> int:
        """How many of these candidates the pre stage must encode from their text."""
        if not self.arch.split:
            return 0
        return sum(1 for pid, text in zip(ids, texts, strict=True) if text and not self.stored(pid))

    def stored(self, pid: str) -> bool:
        """Whether the passage store holds ``pid`` (its stored state is then what is scored)."""
        return self.store is not None and bool(pid) and pid in self.store

    def passages(self, ids: Sequence[str], texts: Sequence[str], check: Callable[[], None] | None = None) -> list[PassageItem]:
        """Stored state for ids in the passage store (a text sent with a stored id is not used); the
        text (encoded now, ``check`` before each batch) for the others. :class:`NotFoundError` names
        the candidates with neither."""
        items: list[PassageItem | None] = [None] * len(ids)
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
            raise NotFoundError(f"{len(missing)} candidate(s) have no text and are not {where}: {some(missing)}")
        if stored:  # one decode for all stored candidates (compressed stores decode in one pass)
            assert self.store is not None
            for i, state in zip(stored, self.store.get_many([ids[i] for i in stored]), strict=True):
                items[i] = PassageItem(state, self.store.is_truncated(ids[i]), True)
        if to_encode:
            for i, item in zip(to_encode, self.texts([texts[i] for i in to_encode], check), strict=True):
                items[i] = item
        return items  # type: ignore[return-value]

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
