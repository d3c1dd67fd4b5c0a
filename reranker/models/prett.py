"""PreTT: lower layers on query and passage apart (the passage part is cached), upper layers joint."""

from __future__ import annotations

from torch import Tensor, nn

from reranker.config import ModelConfig
from reranker.models.base import Ranker, State, Tokens, init_linear, pack_pairs
from reranker.models.bert import BertEncoder, load_hf_encoder_weights


class PreTT(Ranker):
    """The passage's [CLS] is dropped after the lower layers, and its positions start at
    ``query_max_len``, so the cached passage state does not depend on the query."""

    arch = "prett"
    fresh_parameters = ("head.",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.bert = BertEncoder(config.encoder)
        self.split = config.prett_split_layer
        self.head = init_linear(nn.Linear(config.encoder.hidden_size, 1, bias=False))

    def encode_query(self, q: Tokens) -> State:
        hidden = self.bert.run_layers(self.bert.embed(q.ids), q.mask, 0, self.split)
        return State(hidden, q.mask)

    def encode_passages(self, p: Tokens) -> State:
        embedded = self.bert.embed(p.ids, token_type=1, position_offset=self.config.query_max_len - 1)
        hidden = self.bert.run_layers(embedded, p.mask, 0, self.split)
        return State(hidden[:, 1:], p.mask[:, 1:])

    def score_encoded(self, q: State, p: State) -> Tensor:
        packed, mask, _ = pack_pairs(q.vectors, q.mask, p.vectors, p.mask)
        hidden = self.bert.run_layers(packed, mask, self.split, None)
        return self.head(hidden[:, 0]).squeeze(-1)

    def load_base_weights(self, model_dir: str) -> None:
        load_hf_encoder_weights(self.bert, model_dir)
