"""ColBERT: per-token vectors, score = sum over query tokens of max over passage tokens (MaxSim)."""

from __future__ import annotations

from torch import Tensor, nn

from reranker.config import ModelConfig
from reranker.models.base import Ranker, State, Tokens, init_linear
from reranker.models.bert import MASK_VALUE, BertEncoder, load_hf_encoder_weights


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


class ColBERT(Ranker):
    """Queries are padded with attended [MASK] tokens (query augmentation) by the tokenizer."""

    arch = "colbert"
    fresh_parameters = ("projection.",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.bert = BertEncoder(config.encoder)
        hidden = config.encoder.hidden_size
        self.projection = (init_linear(nn.Linear(hidden, config.colbert_dim, bias=False))
                           if config.colbert_dim else None)

    def _encode(self, t: Tokens) -> State:
        vectors = self.bert(t.ids, t.mask)
        if self.projection is not None:
            vectors = self.projection(vectors)
        vectors = nn.functional.normalize(vectors, dim=-1)
        return State(vectors * t.mask.unsqueeze(-1).to(vectors.dtype), t.mask)

    def encode_query(self, q: Tokens) -> State:
        return self._encode(q)

    def encode_passages(self, p: Tokens) -> State:
        return self._encode(p)

    def score_encoded(self, q: State, p: State) -> Tensor:
        return maxsim(q, p)

    def load_base_weights(self, model_dir: str) -> None:
        load_hf_encoder_weights(self.bert, model_dir)
