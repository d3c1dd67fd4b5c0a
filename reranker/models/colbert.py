"""ColBERT: per-token vectors, score = sum over query tokens of max over passage tokens (MaxSim)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reranker.config import ModelConfig
from reranker.models.base import Ranker, State, Tokens, init_linear
from reranker.models.bert import MASK_VALUE, BertEncoder, load_hf_encoder_weights
from reranker.models.hf_encoder import HFEncoder


def maxsim(q: State, p: State) -> Tensor:
    """Sum over real query positions of the best dot product with any real passage position.

    Padded passage positions are masked before the max, padded query positions contribute 0.

    >>> import torch
    >>> qv = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> pv = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [9.0, 9.0]]])
    >>> float(maxsim(State(qv, torch.tensor([[1, 1]])), State(pv, torch.tensor([[1, 1, 0]]))))
    1.5
    """
    sim = q.vectors @ p.vectors.transpose(1, 2)
    sim = sim.masked_fill(p.mask.unsqueeze(1) == 0, MASK_VALUE)
    best = sim.max(dim=2).values
    return (best * q.mask.to(best.dtype)).sum(1)


def compact(vectors: Tensor, keep: Tensor) -> State:
    """Move the kept positions of each row to its front (in order) and mask the rest.

    ``vectors`` (batch, length, dim), ``keep`` (batch, length) 0/1 -> a left-aligned State of the
    same shape, so that a row's first ``keep.sum()`` vectors are its kept ones (what the passage
    store keeps). Written with index arithmetic only, so the ONNX graph keeps dynamic axes.

    >>> import torch
    >>> s = compact(torch.tensor([[[1.0], [2.0], [3.0]]]), torch.tensor([[1, 0, 1]]))
    >>> s.vectors[0, :, 0].tolist(), s.mask.tolist()
    ([1.0, 3.0, 0.0], [[1, 1, 0]])
    """
    pos = torch.cumsum(torch.ones_like(keep), dim=1) - 1
    order = torch.argsort(pos - keep * (1 << 20), dim=1)  # kept positions first, each group in order
    moved = torch.gather(vectors, 1, order.unsqueeze(-1).expand(-1, -1, vectors.shape[2]))
    mask = (pos < keep.sum(dim=1, keepdim=True)).to(keep.dtype)
    return State(moved * mask.unsqueeze(-1).to(moved.dtype), mask)


class ColBERT(Ranker):
    """Queries are padded with [MASK] tokens (query augmentation) by the tokenizer; imported Stanford
    ColBERT / PyLate models may leave them unattended (``colbert_unattended_id``) and drop skiplisted
    passage tokens (``colbert_skiplist``) from MaxSim and the store."""

    arch = "colbert"
    fresh_parameters = ("projection.",)
    skiplist: Tensor
    """(n,) int64 token ids of ``colbert_skiplist`` (a buffer, not saved)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        # a BERT of ours, or transformers' own encoder of another family (imported PyLate / ColBERT models)
        self.bert = BertEncoder(config.encoder) if config.hf_config is None else HFEncoder(config.hf_config)
        hidden = config.encoder.hidden_size
        self.projection = init_linear(nn.Linear(hidden, config.colbert_dim, bias=False)) if config.colbert_dim else None
        self.register_buffer("skiplist", torch.tensor(config.colbert_skiplist, dtype=torch.long), persistent=False)

    def _encode(self, t: Tokens, attend: Tensor) -> State:
        vectors = self.bert(t.ids, attend)
        if self.projection is not None:
            vectors = self.projection(vectors)
        vectors = nn.functional.normalize(vectors, dim=-1)
        return State(vectors * t.mask.unsqueeze(-1).to(vectors.dtype), t.mask)

    def encode_query(self, q: Tokens) -> State:
        attend = q.mask
        if self.config.colbert_unattended_id >= 0:
            attend = q.mask * (q.ids != self.config.colbert_unattended_id).to(q.mask.dtype)
        return self._encode(q, attend)

    def encode_passages(self, p: Tokens) -> State:
        state = self._encode(p, p.mask)
        if not self.config.colbert_skiplist:
            return state
        skipped = (p.ids.unsqueeze(-1) == self.skiplist).to(p.mask.dtype).sum(-1)
        return compact(state.vectors, p.mask * (1 - skipped.clamp(max=1)))

    def score_encoded(self, q: State, p: State) -> Tensor:
        return maxsim(q, p)

    def load_base_weights(self, model_dir: str) -> None:
        if isinstance(self.bert, HFEncoder):
            self.bert.load(model_dir)
        else:
            load_hf_encoder_weights(self.bert, model_dir)
