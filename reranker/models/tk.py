"""TK: word embeddings, a shallow transformer contextualiser and RBF kernel pooling."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from reranker.config import EncoderConfig, ModelConfig
from reranker.models.base import Ranker, State, Tokens
from reranker.models.bert import Layer, attention_bias, positions_of, read_hf_tensors


def sinusoid_table(length: int, dim: int) -> Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def kernel_pooling(q: State, p: State, mus: Tensor, sigma: float, scaler: Tensor | float = 0.01) -> Tensor:
    """TK's kernel features: (batch, kernels) of masked log soft-TF sums (Hofstätter et al. 2020).

    ``q`` and ``p`` hold unit vectors; for each query term and kernel, RBF activations of the
    cosine matches are summed over real passage terms, then log(clamp) * ``scaler`` is summed over
    real query terms. TK learns ``scaler`` (from 0.01, as the authors' implementation does): with
    a fixed 0.01 the kernel features differ between passages by ~0.01-0.3, so the score head's
    +-0.014 weights need thousands of steps before margins reach the teacher's scale.
    """
    match = q.vectors @ p.vectors.transpose(1, 2)
    act = torch.exp(-((match.unsqueeze(-1) - mus) ** 2) / (2 * sigma**2))
    act = act * p.mask[:, None, :, None].to(act.dtype)
    per_term = torch.log(act.sum(2).clamp(min=1e-10)) * scaler
    return (per_term * q.mask.unsqueeze(-1).to(per_term.dtype)).sum(1)


class TK(Ranker):
    """Query and passage are contextualised independently, so passage encodings are storable.

    Initialisation departs from the paper's (mixer 0.5, kernel weights uniform in +-0.014) for short
    CPU budgets: with a random contextualiser mixed in at one half and random kernel weights, an
    untrained TK ranks at random (validation nDCG@10 0.160 here) and 1,000 steps did not lift it
    (0.173). TK starts instead as a soft-match model: mixer 0.9 (the word embeddings carry the
    match signal while the contextualiser learns) and kernel weights ``max(mu, 0)^2`` (exact matches
    count most, dissimilar terms not at all), which ranks at 0.476 before any training.
    """

    arch = "tk"
    fresh_parameters = ("contextualiser.", "mixer", "scaler", "dense.")
    positions: Tensor
    mus: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        enc: EncoderConfig = config.encoder
        hidden = enc.hidden_size
        self.word_embeddings = nn.Embedding(enc.vocab_size, hidden, padding_idx=0)
        self.contextualiser = nn.ModuleList(
            Layer(hidden, config.tk_heads, config.tk_ff_size, 1e-5, enc.dropout) for _ in range(config.tk_layers)
        )
        max_len = max(config.query_max_len, config.passage_max_len)
        self.register_buffer("positions", sinusoid_table(max_len, hidden), persistent=False)
        self.register_buffer("mus", torch.tensor(config.tk_kernel_mus), persistent=False)
        self.mixer = nn.Parameter(torch.full((1,), 0.9))
        self.scaler = nn.Parameter(torch.full((1,), 0.01))
        self.dense = nn.Linear(len(config.tk_kernel_mus), 1, bias=False)
        with torch.no_grad():
            self.dense.weight.copy_(self.mus.clamp(min=0).pow(2).unsqueeze(0))

    def _encode(self, t: Tokens) -> State:
        emb = self.word_embeddings(t.ids)
        ctx = emb + nn.functional.embedding(positions_of(t.ids), self.positions)
        bias = attention_bias(t.mask, ctx.dtype)
        for layer in self.contextualiser:
            ctx = layer(ctx, bias)
        mixed = self.mixer * emb + (1 - self.mixer) * ctx
        vectors = nn.functional.normalize(mixed, dim=-1) * t.mask.unsqueeze(-1).to(mixed.dtype)
        return State(vectors, t.mask)

    def encode_query(self, q: Tokens) -> State:
        return self._encode(q)

    def encode_passages(self, p: Tokens) -> State:
        return self._encode(p)

    def score_encoded(self, q: State, p: State) -> Tensor:
        features = kernel_pooling(q, p, self.mus, self.config.tk_kernel_sigma, self.scaler)
        return self.dense(features).squeeze(-1)

    def load_base_weights(self, model_dir: str) -> None:
        name = "embeddings.word_embeddings.weight"
        tensors = read_hf_tensors(model_dir, {name: self.word_embeddings.weight.shape})
        with torch.no_grad():
            self.word_embeddings.weight.copy_(tensors[name])
