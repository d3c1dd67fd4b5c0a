"""What teacher members share: text checks, pair grouping, and the two member shapes (one vector
per text; one array per text scored per query)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from reranker.errors import NotFoundError
from reranker.training.teacher import Pairs


def _check_texts(queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs) -> None:
    for qid, pid in pairs:
        if qid not in queries:
            raise NotFoundError(f"query {qid} has no text in the data folders")
        if pid not in passages:
            raise NotFoundError(f"passage {pid} (query {qid}) has no text in the data folders")


def _distinct(pairs: Pairs) -> tuple[list[str], list[str]]:
    return sorted({q for q, _ in pairs}), sorted({p for _, p in pairs})


def _by_query(pairs: Pairs) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (qid, _) in enumerate(pairs):
        groups[qid].append(i)
    return groups


def _length_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --- single-vector members (cosine) --------------------------------------------------------------
class VectorMember:
    """Scores a pair by the dot product of one query and one passage vector (cosine when unit length).

    ``encode(texts, is_query)`` returns (len(texts), dim) float32.
    """

    def __init__(self, name: str, encode: Callable[[Sequence[str], bool], np.ndarray], batch_size: int = 64) -> None:
        self.name = name
        self._encode = encode
        self.batch_size = batch_size

    def _vectors(self, texts: Sequence[str], is_query: bool, progress: bool, desc: str) -> np.ndarray:
        out: np.ndarray | None = None
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for idx in _length_batches(texts, self.batch_size):
                vec = self._encode([texts[i] for i in idx], is_query)
                if out is None:
                    out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
                out[idx] = vec
                bar.update(len(idx))
        return out if out is not None else np.zeros((0, 1), dtype=np.float32)

    def score(
        self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *, progress: bool = False
    ) -> np.ndarray:
        _check_texts(queries, passages, pairs)
        qids, pids = _distinct(pairs)
        qv = self._vectors([queries[q] for q in qids], True, progress, f"{self.name} queries")
        pv = self._vectors([passages[p] for p in pids], False, progress, f"{self.name} passages")
        qi = {q: i for i, q in enumerate(qids)}
        pi = {p: i for i, p in enumerate(pids)}
        rows_q = np.fromiter((qi[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
        rows_p = np.fromiter((pi[p] for _, p in pairs), dtype=np.int64, count=len(pairs))
        return np.einsum("nd,nd->n", qv[rows_q], pv[rows_p]).astype(np.float32)


# --- multi-vector members (MaxSim, SPLADE) -------------------------------------------------------
class GroupedMember:
    """Encodes every distinct text once into a per-text array, then scores each query's pairs together.

    ``encode(texts, is_query)`` returns one array per text; ``pair_scores(q, [p...])`` the scores of
    one query's encoding against several passages' encodings.
    """

    def __init__(
        self,
        name: str,
        encode: Callable[[Sequence[str], bool], list[Any]],
        pair_scores: Callable[[Any, list[Any]], np.ndarray],
        batch_size: int = 64,
    ) -> None:
        self.name = name
        self._encode = encode
        self._pair_scores = pair_scores
        self.batch_size = batch_size

    def _encodings(self, texts: Sequence[str], is_query: bool, progress: bool, desc: str) -> list[Any]:
        out: list[Any] = [None] * len(texts)
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for idx in _length_batches(texts, self.batch_size):
                for i, e in zip(idx.tolist(), self._encode([texts[i] for i in idx], is_query), strict=True):
                    out[i] = e
                bar.update(len(idx))
        return out

    def score(
        self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *, progress: bool = False
    ) -> np.ndarray:
        _check_texts(queries, passages, pairs)
        qids, pids = _distinct(pairs)
        q_enc = dict(zip(qids, self._encodings([queries[q] for q in qids], True, progress, f"{self.name} queries"), strict=True))
        p_enc = dict(
            zip(pids, self._encodings([passages[p] for p in pids], False, progress, f"{self.name} passages"), strict=True)
        )
        scores = np.empty(len(pairs), dtype=np.float32)
        for qid, rows in _by_query(pairs).items():
            scores[rows] = self._pair_scores(q_enc[qid], [p_enc[pairs[r][1]] for r in rows])
        return scores
