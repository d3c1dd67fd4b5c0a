"""The contract every ranking model follows, and shared tensor helpers."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from reranker.config import ModelConfig
from reranker.errors import ConfigError


class Tokens(NamedTuple):
    """A left-aligned padded batch of token ids (see :mod:`reranker.tokenization`)."""

    ids: Tensor
    """(batch, length) int64."""
    mask: Tensor
    """(batch, length) int64, 1 = real token."""


class State(NamedTuple):
    """Per-token vectors of one side (query or passage) and their mask.

    Single-vector models (BERT-dot) use length 1. Passage states are what the store keeps.
    """

    vectors: Tensor
    """(batch, length, dim) float."""
    mask: Tensor
    """(batch, length) int64, 1 = real position."""


def pack_pairs(q: Tensor, q_mask: Tensor, p: Tensor, p_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate each query row with its passage row, with no padding in between.

    ``q`` (B, Lq) or (B, Lq, D) and ``p`` (B, Lp[, D]) are left-aligned with masks (B, Lq) / (B, Lp).
    Returns ``(packed, mask, segment)`` of length ``Lq + Lp``: row i holds the ``lq_i`` query
    items, then the ``lp_i`` passage items, then padding; ``segment`` is 1 on passage items.
    Packing (rather than concatenating padded rows) keeps every real token at the same position
    whatever the batch's padding, so scores are padding-invariant.
    """
    # Written with data-dependent index arithmetic only (no Python ints from shapes), so that the
    # exported ONNX graph keeps dynamic batch and sequence axes.
    both = torch.cat([q_mask, p_mask], dim=1)
    j = torch.cumsum(torch.ones_like(both), dim=1) - 1
    n_q = q_mask.sum(dim=1, keepdim=True)
    n_p = p_mask.sum(dim=1, keepdim=True)
    from_q = j < n_q
    q_idx = torch.minimum(j, n_q - 1)
    p_idx = torch.minimum((j - n_q).clamp(min=0), (n_p - 1).clamp(min=0))
    if q.dim() == 3:
        dim = q.shape[2]
        q_g = torch.gather(q, 1, q_idx.unsqueeze(-1).expand(-1, -1, dim))
        p_g = torch.gather(p, 1, p_idx.unsqueeze(-1).expand(-1, -1, dim))
        packed = torch.where(from_q.unsqueeze(-1), q_g, p_g)
    else:
        packed = torch.where(from_q, torch.gather(q, 1, q_idx), torch.gather(p, 1, p_idx))
    mask = (j < n_q + n_p).to(q_mask.dtype)
    segment = ((~from_q) & (mask > 0)).to(q_mask.dtype)
    return packed, mask, segment


class Ranker(nn.Module):
    """A ranking model: ``score`` end to end, or split into query / passage encoding.

    ``score(q, p)`` scores row i of the query batch against row i of the passage batch.
    Split models also offer ``encode_query``, ``encode_passages`` (computable once and stored)
    and ``score_encoded``, with ``score == score_encoded(encode_query, encode_passages)``.
    """

    arch: str = ""
    fresh_parameters: tuple[str, ...] = ()
    """Name prefixes of the parameters that start at random rather than from the base model (the
    trainer gives them ``--head-lr``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != self.arch:
            raise ConfigError(f"{type(self).__name__} needs arch {self.arch!r}, config says {config.arch!r}")
        self.config = config

    def score(self, q: Tokens, p: Tokens) -> Tensor:
        return self.score_encoded(self.encode_query(q), self.encode_passages(p))

    def encode_query(self, q: Tokens) -> State:
        raise NotImplementedError(f"{self.arch} has no query/passage split")

    def encode_passages(self, p: Tokens) -> State:
        raise NotImplementedError(f"{self.arch} has no query/passage split: passages cannot be precomputed")

    def score_encoded(self, q: State, p: State) -> Tensor:
        raise NotImplementedError(f"{self.arch} has no query/passage split")

    def load_base_weights(self, model_dir: str) -> None:
        """Initialise from a Hugging Face BERT directory (the encoder, or TK's word embeddings)."""
        raise NotImplementedError


def init_linear(layer: nn.Linear, std: float = 0.02) -> nn.Linear:
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer
