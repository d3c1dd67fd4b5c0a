"""Batched PyTorch scoring of (query, passage) pairs, for teacher scoring, validation and evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from reranker.errors import NotFoundError
from reranker.models import State, Tokens
from reranker.models.checkpoint import Loaded, device_of
from reranker.tokenization import Encoded, Preprocessor


def to_tokens(enc: Encoded, device: torch.device) -> Tokens:
    return Tokens(torch.from_numpy(enc.input_ids).to(device), torch.from_numpy(enc.attention_mask).to(device))


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast when asked for (``--precision bf16``); a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def score_pairs(
    loaded: Loaded,
    queries: Sequence[str],
    passages: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "scoring",
    bf16: bool = False,
) -> np.ndarray:
    """Score pair i = (queries[i], passages[i]); returns float32 scores in input order.

    Pairs are sorted by passage length so that each batch pads little.
    """
    if len(queries) != len(passages):
        raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    model, device = loaded.model, device_of(loaded.model)
    order = np.argsort([len(p) for p in passages], kind="stable")
    scores = np.empty(len(passages), dtype=np.float32)
    was_training = model.training
    model.eval()
    with (
        torch.inference_mode(),
        _autocast(device, bf16),
        tqdm(total=len(order), desc=desc, unit="pair", disable=not progress) as bar,
    ):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            q = to_tokens(prep.queries([queries[i] for i in idx]), device)
            p = to_tokens(prep.passages([passages[i] for i in idx]), device)
            scores[idx] = model.score(q, p).float().cpu().numpy()
            bar.update(len(idx))
    model.train(was_training)
    return scores


def rerank(
    loaded: Loaded,
    queries: Mapping[str, str],
    passages: Mapping[str, str],
    candidates: Mapping[str, Sequence[tuple[str, float]]],
    *,
    depth: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, list[tuple[str, float]]]:
    """Re-score the top-``depth`` candidates of each query; returns a run sorted by new score."""
    pairs: list[tuple[str, str]] = []
    for qid, cands in candidates.items():
        if qid not in queries:
            raise NotFoundError(f"query {qid} of the run has no text")
        for pid, _ in cands[:depth]:
            if pid not in passages:
                raise NotFoundError(f"passage {pid} (query {qid}) has no text")
            pairs.append((qid, pid))
    scores = score_pairs(
        loaded,
        [queries[q] for q, _ in pairs],
        [passages[p] for _, p in pairs],
        batch_size=batch_size,
        progress=progress,
        desc="re-ranking",
    )
    run: dict[str, list[tuple[str, float]]] = {}
    for (qid, pid), score in zip(pairs, scores.tolist(), strict=True):
        run.setdefault(qid, []).append((pid, score))
    for cands in run.values():
        cands.sort(key=lambda item: -item[1])
    return run


def encode_states(
    loaded: Loaded,
    texts: Sequence[str],
    *,
    is_query: bool,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "encoding",
    bf16: bool = False,
) -> list[torch.Tensor]:
    """Each text's state of a split model, trimmed to its real positions: (length, dim) float32 tensors.

    The passage side is what a passage store keeps; scoring from it equals ``score`` (see
    :func:`score_states`). Raises NotImplementedError for architectures without a split.
    """
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    model, device = loaded.model, device_of(loaded.model)
    out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    was_training = model.training
    model.eval()
    with (
        torch.inference_mode(),
        _autocast(device, bf16),
        tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar,
    ):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [texts[i] for i in idx]
            tokens = to_tokens(prep.queries(batch) if is_query else prep.passages(batch), device)
            state = model.encode_query(tokens) if is_query else model.encode_passages(tokens)
            lengths = state.mask.sum(1).tolist()
            for row, i in enumerate(idx.tolist()):
                out[i] = state.vectors[row, : max(int(lengths[row]), 1)].float().clone()
            bar.update(len(idx))
    model.train(was_training)
    return out


def _pad(states: Sequence[torch.Tensor]) -> State:
    length = max(s.shape[0] for s in states)
    vectors = torch.zeros(len(states), length, states[0].shape[1], dtype=states[0].dtype, device=states[0].device)
    mask = torch.zeros(len(states), length, dtype=torch.int64, device=states[0].device)
    for i, s in enumerate(states):
        vectors[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return State(vectors, mask)


def score_states(loaded: Loaded, query: torch.Tensor, passages: Sequence[torch.Tensor]) -> np.ndarray:
    """Scores of one query state (Lq, D) against passage states (Lp_i, D) from :func:`encode_states`."""
    p = _pad(passages)
    q = _pad([query])
    q = State(q.vectors.expand(len(passages), -1, -1), q.mask.expand(len(passages), -1))
    with torch.inference_mode():
        return loaded.model.score_encoded(q, p).float().cpu().numpy()
