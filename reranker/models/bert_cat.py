"""BERT-cat: the cross-encoder teacher, ``[CLS] q [SEP] p [SEP]`` -> Linear(CLS)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reranker.config import ModelConfig
from reranker.models.base import Ranker, Tokens, init_linear, pack_pairs
from reranker.models.bert import BertEncoder, load_hf_encoder_weights


class BertCat(Ranker):
    """Scores a query and a passage read together; no part of it can be precomputed."""

    arch = "bert_cat"
    fresh_parameters = ("head.",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.bert = BertEncoder(config.encoder)
        self.head = init_linear(nn.Linear(config.encoder.hidden_size, 1))
        hidden = config.encoder.hidden_size
        self.pooler = init_linear(nn.Linear(hidden, hidden)) if config.cat_pooler else None

    def score(self, q: Tokens, p: Tokens) -> Tensor:
        # The passage's own [CLS] is dropped: the pair reads [CLS] q [SEP] p [SEP].
        ids, mask, segment = pack_pairs(q.ids, q.mask, p.ids[:, 1:], p.mask[:, 1:])
        # only [CLS] is read: the last layer computes that row alone (BertEncoder.run_layers)
        hidden = self.bert.run_layers(self.bert.embed(ids, segment), mask, last_rows=1)
        cls = hidden[:, 0]
        if self.pooler is not None:
            cls = torch.tanh(self.pooler(cls))
        logit = self.head(cls).squeeze(-1)
        return torch.sigmoid(logit) if self.config.cat_activation == "sigmoid" else logit

    def load_base_weights(self, model_dir: str) -> None:
        load_hf_encoder_weights(self.bert, model_dir)
