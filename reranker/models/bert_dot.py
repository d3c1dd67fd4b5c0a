"""BERT-dot: one shared encoder, one vector per side, score = dot product."""

from __future__ import annotations

import torch
from torch import Tensor

from reranker.config import ModelConfig
from reranker.models.base import Ranker, State, Tokens
from reranker.models.bert import BertEncoder, load_hf_encoder_weights


class BertDot(Ranker):
    """Passage vectors are precomputable (one per passage) and usable for dense retrieval."""

    arch = "bert_dot"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.bert = BertEncoder(config.encoder)
        self.dense = torch.nn.Linear(config.encoder.hidden_size, config.dot_dense_dim) if config.dot_dense_dim else None

    def _encode(self, t: Tokens) -> State:
        hidden = self.bert(t.ids, t.mask)
        if self.config.dot_pooling == "cls":
            vec = hidden[:, 0]
        else:
            weights = t.mask.unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if self.dense is not None:
            vec = self.dense(vec)
            if self.config.dot_dense_activation == "tanh":
                vec = torch.tanh(vec)
        if self.config.dot_normalize:
            vec = torch.nn.functional.normalize(vec, p=2.0, dim=-1)
        return State(vec.unsqueeze(1), torch.ones_like(t.mask[:, :1]))

    def encode_query(self, q: Tokens) -> State:
        return self._encode(q)

    def encode_passages(self, p: Tokens) -> State:
        return self._encode(p)

    def score_encoded(self, q: State, p: State) -> Tensor:
        return (q.vectors[:, 0] * p.vectors[:, 0]).sum(-1)

    def load_base_weights(self, model_dir: str) -> None:
        load_hf_encoder_weights(self.bert, model_dir)
