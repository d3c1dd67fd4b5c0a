"""One ONNX Runtime scorer for every architecture, in pre / core / post stages.

* pre: :meth:`OnnxScorer.prepare_query` (tokenise, and encode once for split models) and
  :meth:`OnnxScorer.prepare_passages` (stored passage state by id, else encode the text);
* core: :meth:`OnnxScorer.score` runs the graph on one ready batch of (query, passage) pairs,
  which may come from different requests;
* post: the caller (the engine) sorts and cuts to top_k.

:meth:`OnnxScorer.rerank` chains them for one request, batching by length so padding stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reranker.artifact import Artifact, graphs_for
from reranker.errors import InvalidInputError, NotFoundError
from reranker.runtime.config import RuntimeConfig
from reranker.runtime.sessions import Graph
from reranker.tokenization import Preprocessor

if TYPE_CHECKING:
    from reranker.store import PassageStore

log = logging.getLogger(__name__)


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


def pad_rows(rows: Sequence[np.ndarray], fill: float = 0,
             dtype: np.dtype | type | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned padding of (length, ...) arrays into (batch, longest, ...) plus an int64 mask."""
    width = max(r.shape[0] for r in rows)
    dtype = dtype or rows[0].dtype
    out = np.full((len(rows), width, *rows[0].shape[1:]), fill, dtype=dtype)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
    return out, mask


class OnnxScorer:
    """Scores (query, passage) pairs with an artifact's graphs on ONNX Runtime."""

    def __init__(self, artifact: Artifact, cfg: RuntimeConfig | None = None, store: PassageStore | None = None) -> None:
        self.artifact, self.cfg = artifact, cfg or RuntimeConfig()
        self.config = artifact.config
        self.arch = artifact.arch
        self.split = self.arch != "bert_cat"
        if store is not None and not self.split:
            raise InvalidInputError("a bert_cat model cannot use a passage store: it has no passage-side state")
        self.store = store
        self.prep = Preprocessor(artifact.tokenizer, artifact.config)
        self.graphs = {name: Graph(artifact.graph_path(name), self.cfg) for name in graphs_for(self.arch)}
        self.provider = next(iter(self.graphs.values())).provider
        log.info("loaded %s %s artifact %s on %s", self.arch, artifact.precision, artifact.directory, self.provider)
        if self.cfg.warmup:
            self.rerank("warm up query", [""], ["a short passage to warm up every graph"])

    @property
    def query_token_limit(self) -> int:
        """Word pieces a query may have (queries are never truncated)."""
        return self.config.query_max_len - (0 if self.arch == "tk" else 2)

    # --- pre ----------------------------------------------------------------------------------
    def prepare_query(self, text: str) -> QueryItem:
        enc = self.prep.queries([text])
        if enc.lengths[0] == 0:
            raise InvalidInputError("the query has no word pieces this model can read (only spaces, control or "
                                    "unknown characters); send a query with text")
        if enc.truncated[0]:
            raise InvalidInputError(f"the query has {int(enc.lengths[0])} word pieces; this {self.arch} model allows "
                                    f"at most {self.query_token_limit} (queries are never truncated)")
        if not self.split:
            return QueryItem(enc.input_ids[0, : int(enc.attention_mask[0].sum())])
        vectors, mask = self.graphs["query_encoder"].run({"ids": enc.input_ids, "mask": enc.attention_mask})
        return QueryItem(vectors[0, : int(mask[0].sum())])

    def encode_texts(self, texts: Sequence[str]) -> list[PassageItem]:
        """Passage items from text: ids for the cross-encoder, else the passage encoder's state."""
        enc = self.prep.passages(texts)
        lengths = enc.attention_mask.sum(1)
        items: list[PassageItem | None] = [None] * len(texts)
        if not self.split:
            for i in range(len(texts)):
                items[i] = PassageItem(enc.input_ids[i, : lengths[i]], bool(enc.truncated[i]), False)
            return items  # type: ignore[return-value]
        for batch in plan_batches(lengths.tolist(), self.cfg.max_batch_pairs, self.cfg.max_batch_tokens):
            width = int(lengths[batch].max())
            vectors, mask = self.graphs["passage_encoder"].run(
                {"ids": enc.input_ids[batch, :width], "mask": enc.attention_mask[batch, :width]})
            for row, i in enumerate(batch.tolist()):
                items[i] = PassageItem(vectors[row, : int(mask[row].sum())], bool(enc.truncated[i]), False)
        return items  # type: ignore[return-value]

    def prepare_passages(self, ids: Sequence[str], texts: Sequence[str]) -> list[PassageItem]:
        """Stored state for ids in the passage store; the text (encoded now) for the others."""
        items: list[PassageItem | None] = [None] * len(ids)
        to_encode: list[int] = []
        missing: list[str] = []
        for i, (pid, text) in enumerate(zip(ids, texts, strict=True)):
            if self.store is not None and pid and pid in self.store:
                items[i] = PassageItem(self.store.get(pid), self.store.is_truncated(pid), True)
            elif text:
                to_encode.append(i)
            else:
                missing.append(pid)
        if missing:
            where = "in the passage store" if self.store is not None else "stored (this model has no passage store)"
            shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NotFoundError(f"{len(missing)} candidate(s) have no text and are not {where}: {shown}")
        if to_encode:
            for i, item in zip(to_encode, self.encode_texts([texts[i] for i in to_encode]), strict=True):
                items[i] = item
        return items  # type: ignore[return-value]

    # --- core ---------------------------------------------------------------------------------
    def score(self, queries: Sequence[QueryItem], passages: Sequence[PassageItem]) -> np.ndarray:
        """Run the graph once on these pairs (the caller bounds the batch); float32 scores."""
        if not self.split:
            q_ids, q_mask = pad_rows([q.data for q in queries], self.prep.tokenizer.pad_id)
            p_ids, p_mask = pad_rows([p.data for p in passages], self.prep.tokenizer.pad_id)
            feeds = {"q_ids": q_ids, "q_mask": q_mask, "p_ids": p_ids, "p_mask": p_mask}
            return self.graphs["cross_encoder"].run(feeds)[0].astype(np.float32)
        q_vec, q_mask = pad_rows([q.data for q in queries], 0.0, np.float32)
        p_vec, p_mask = pad_rows([p.data for p in passages], 0.0, np.float32)
        feeds = {"q_vectors": q_vec, "q_mask": q_mask, "p_vectors": p_vec, "p_mask": p_mask}
        return self.graphs["scorer"].run(feeds)[0].astype(np.float32)

    # --- one request --------------------------------------------------------------------------
    def rerank(self, query: str, ids: Sequence[str], texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and truncation flags of every candidate, in input order."""
        q = self.prepare_query(query)
        passages = self.prepare_passages(ids, texts)
        scores = np.empty(len(passages), dtype=np.float32)
        for batch in plan_batches([p.length for p in passages], self.cfg.max_batch_pairs, self.cfg.max_batch_tokens):
            scores[batch] = self.score([q] * len(batch), [passages[i] for i in batch])
        return scores, np.array([p.truncated for p in passages], dtype=bool)
