"""A small, export-friendly BERT encoder whose parameter names match Hugging Face's ``BertModel``.

Written out (rather than wrapping ``transformers``) so that layers can be run in ranges (PreTT
splits the stack), positions can be offset, and the ONNX graphs stay plain matmuls.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from reranker.config import EncoderConfig
from reranker.errors import ArtifactError

MASK_VALUE = -1.0e4
"""Added to attention logits of padded keys: far below any real logit, finite in fp16."""


def attention_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(batch, length) 0/1 key mask -> (batch, 1, 1, length) additive bias."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def positions_of(ids: Tensor) -> Tensor:
    """0, 1, 2, ... along the sequence axis, shaped like ``ids`` (stays dynamic in ONNX)."""
    return torch.cumsum(torch.ones_like(ids), dim=1) - 1


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor, rows: int | None = None) -> Tensor:
        """``rows``: compute the output of the first ``rows`` positions only (keys and values still
        come from every position)."""
        x_q = x if rows is None else x[:, :rows]
        q, k, v = self._split(self.query(x_q)), self._split(self.key(x)), self._split(self.value(x))
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        probs = self.dropout(logits.softmax(dim=-1))
        return (probs @ v).transpose(1, 2).flatten(-2)


class SelfOutput(nn.Module):
    def __init__(self, hidden: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.self = SelfAttention(hidden, heads, dropout)
        self.output = SelfOutput(hidden, eps, dropout)

    def forward(self, x: Tensor, bias: Tensor, rows: int | None = None) -> Tensor:
        return self.output(self.self(x, bias, rows), x if rows is None else x[:, :rows])


class Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.gelu(self.dense(x))


class Output(nn.Module):
    def __init__(self, hidden: int, inner: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Layer(nn.Module):
    """One post-LayerNorm transformer block (BERT's)."""

    def __init__(self, hidden: int, heads: int, inner: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.attention = Attention(hidden, heads, eps, dropout)
        self.intermediate = Intermediate(hidden, inner)
        self.output = Output(hidden, inner, eps, dropout)

    def forward(self, x: Tensor, bias: Tensor, rows: int | None = None) -> Tensor:
        """(batch, length, hidden) -> (batch, length, hidden), or (batch, rows, hidden) for the first
        ``rows`` positions only: every position-wise part (query projection, attention output, feed-forward)
        then runs on those rows alone, and the result equals the same rows of the full output."""
        x = self.attention(x, bias, rows)
        return self.output(self.intermediate(x), x)


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_position, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class LayerStack(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            Layer(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.layer_norm_eps, cfg.dropout)
            for _ in range(cfg.num_layers)
        )


class BertEncoder(nn.Module):
    """Embeddings plus a stack of layers that can be run whole or in ranges."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = LayerStack(cfg)

    def embed(self, input_ids: Tensor, token_type: int | Tensor = 0, position_offset: int = 0) -> Tensor:
        """Embeddings of left-aligned ids; positions start at ``position_offset``."""
        positions = positions_of(input_ids) + position_offset
        if isinstance(token_type, int):
            token_type = torch.full_like(input_ids, token_type)
        return self.embeddings(input_ids, token_type, positions)

    def run_layers(
        self, hidden: Tensor, mask: Tensor, start: int = 0, end: int | None = None, last_rows: int | None = None
    ) -> Tensor:
        """Layers ``start:end`` over (batch, length, hidden) states with a (batch, length) key mask.

        ``last_rows``: the last layer computes only the first ``last_rows`` positions (batch,
        last_rows, hidden). A model that reads only [CLS] (BERT-cat) passes 1 and skips, in the last
        layer, the query projection, attention output and feed-forward of every other token: exactly
        the same score for about 1/7 fewer FLOPs in a 6-layer encoder.
        """
        bias = attention_bias(mask, hidden.dtype)
        layers = list(self.encoder.layer[start:end])
        for i, layer in enumerate(layers):
            hidden = layer(hidden, bias, last_rows if i == len(layers) - 1 else None)
        return hidden

    def forward(self, input_ids: Tensor, mask: Tensor, token_type: int | Tensor = 0, position_offset: int = 0) -> Tensor:
        return self.run_layers(self.embed(input_ids, token_type, position_offset), mask)


def read_hf_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ArtifactError(f"{model_dir} is not a Hugging Face model directory: no config.json")
    return json.loads(path.read_text())


def read_hf_tensors(model_dir: str | Path, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    """Read the named tensors of a Hugging Face BERT ``model.safetensors``, checking shapes.

    Names are those of a plain ``BertModel``; prefixed layouts (``bert.``, as in
    ``BertForSequenceClassification``) are accepted. Only safetensors is read: pickled
    ``pytorch_model.bin`` files are refused.
    """
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        pickled = (Path(model_dir) / "pytorch_model.bin").exists()
        extra = " (pickled pytorch_model.bin files are not loaded; convert to safetensors)" if pickled else ""
        raise ArtifactError(f"{model_dir} has no model.safetensors{extra}")
    loaded: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            name = key
            for prefix in ("bert.", "model.", "0.auto_model."):
                name = name.removeprefix(prefix)
            if name in shapes:
                tensor = f.get_tensor(key)
                if tensor.shape != shapes[name]:
                    raise ArtifactError(f"{path}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(shapes[name])}")
                loaded[name] = tensor
    missing = sorted(set(shapes) - set(loaded))
    if missing:
        raise ArtifactError(f"{path} lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
    return loaded


def load_hf_encoder_weights(encoder: BertEncoder, model_dir: str | Path) -> None:
    """Copy a Hugging Face BERT's weights into ``encoder`` (layers beyond its depth are ignored)."""
    own = encoder.state_dict()
    loaded = read_hf_tensors(model_dir, {name: tensor.shape for name, tensor in own.items()})
    encoder.load_state_dict(loaded, strict=True)
