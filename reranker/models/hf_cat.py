"""A cross-encoder of any transformers encoder family (BERT, RoBERTa, XLM-RoBERTa, DeBERTa-v2/v3,
ModernBERT, ELECTRA, DistilBERT), imported as it was trained elsewhere: transformers'
``AutoModelForSequenceClassification`` (one label) behind the same ``score(q, p)`` as our BERT-cat.

Queries and passages arrive as bare token ids (no special tokens); :func:`pack_template` lays the
pair out as the tokenizer's own post-processor does (``<s> q </s></s> p </s>`` for RoBERTa,
``[CLS] q [SEP] p [SEP]`` for BERT) and cuts the passage, never the query, so that the pair fits
``pair_max_len``: where the reference library's ``longest_first`` truncation cuts a long passage
beside a short query. Everything is index arithmetic on tensors, so the exported ONNX graph keeps
dynamic batch and sequence axes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reranker.config import ModelConfig
from reranker.models.base import Ranker, Tokens
from reranker.models.hf_encoder import hf_settings

SUPPORTED_FAMILIES = ("bert", "roberta", "xlm-roberta", "deberta-v2", "modernbert", "electra", "distilbert")
"""transformers ``model_type`` values that import as ``hf_cat`` (tested on tiny models of each)."""


def pack_template(
    q: Tensor, q_mask: Tensor, p: Tensor, p_mask: Tensor, template: dict[str, list[int]], max_len: int, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``prefix q middle p suffix`` per row, left-aligned, padded with ``pad_id``.

    ``q`` (B, Lq) and ``p`` (B, Lp) hold bare token ids with masks of 1 on real tokens. The passage
    keeps at most ``max_len - specials - n_q`` tokens. Returns ``(ids, mask, token_types)``, each
    (B, min(Lq + Lp + specials, max_len)) int64.
    """
    prefix, middle, suffix = (torch.tensor(template[k], dtype=q.dtype) for k in ("prefix", "middle", "suffix"))
    types = template["types"]
    a, b, c = len(template["prefix"]), len(template["middle"]), len(template["suffix"])
    batch = q.shape[0]
    src = torch.cat([prefix.expand(batch, a), q, middle.expand(batch, b), p, suffix.expand(batch, c)], dim=1)
    width_q, width_p = q.shape[1], p.shape[1]
    n_q = q_mask.sum(dim=1, keepdim=True)
    room = (max_len - a - b - c - n_q).clamp(min=0)
    n_p = torch.minimum(p_mask.sum(dim=1, keepdim=True), room)
    j = torch.cumsum(torch.ones_like(src), dim=1) - 1
    e1 = a + n_q
    e2 = e1 + b
    e3 = e2 + n_p
    e4 = e3 + c
    # where position j reads from in src: the prefix and the query are in place, the rest shifted
    idx = torch.where(
        j < e1,
        j,
        torch.where(
            j < e2, a + width_q + (j - e1), torch.where(j < e3, a + width_q + b + (j - e2), a + width_q + b + width_p + (j - e3))
        ),
    )
    real = j < e4
    ids = torch.where(real, torch.gather(src, 1, idx.clamp(max=src.shape[1] - 1)), torch.full_like(src, pad_id))
    part_types = [torch.full_like(src, t) for t in types]
    token_types = torch.where(
        j < a,
        part_types[0],
        torch.where(j < e1, part_types[1], torch.where(j < e2, part_types[2], torch.where(j < e3, part_types[3], part_types[4]))),
    )
    mask = real.to(q_mask.dtype)
    # every real token is within max_len (the passage was cut to fit): the rest is padding, and a
    # sequence longer than the position table would not run, so the pair ends at max_len
    return ids[:, :max_len], mask[:, :max_len], (token_types * mask)[:, :max_len]


def build_hf(hf_config: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised ``AutoModelForSequenceClassification`` of ``hf_config`` (eager attention:
    what exports to ONNX the same way for every family)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(hf_settings(hf_config), attn_implementation="eager")


class HfCat(Ranker):
    """Scores a query and a passage read together by an imported transformers cross-encoder."""

    arch = "hf_cat"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        assert config.hf_config is not None and config.pair_template is not None  # ModelConfig checked it
        self.hf = build_hf(config.hf_config)
        self._template = config.pair_template
        pad = getattr(self.hf.config, "pad_token_id", None)  # the family's own default when config.json names none
        self._pad_id = int(pad) if pad is not None else 0
        self._types = self._takes_token_types(config.hf_config)

    def _takes_token_types(self, hf_config: dict[str, Any]) -> bool:
        """Token type ids are passed where the family's forward takes them and has more than one type
        (BERT, ELECTRA); elsewhere the model's own default (zeros) holds, as its tokenizer sends none."""
        import inspect

        takes = "token_type_ids" in inspect.signature(self.hf.forward).parameters
        return takes and int(hf_config.get("type_vocab_size", 0)) > 1

    def score(self, q: Tokens, p: Tokens) -> Tensor:
        ids, mask, types = pack_template(q.ids, q.mask, p.ids, p.mask, self._template, self.config.pair_max_len, self._pad_id)
        extra = {"token_type_ids": types} if self._types else {}
        logit = self.hf(input_ids=ids, attention_mask=mask, **extra).logits[:, 0]
        return torch.sigmoid(logit) if self.config.cat_activation == "sigmoid" else logit

    def load_base_weights(self, model_dir: str) -> None:
        from transformers import AutoModelForSequenceClassification

        source = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager", use_safetensors=True)
        missing, unexpected = self.hf.load_state_dict(source.state_dict(), strict=False)
        if missing or unexpected:
            from reranker.errors import ArtifactError

            raise ArtifactError(f"{model_dir}: weights do not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
