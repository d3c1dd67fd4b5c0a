"""Cross-encoders of any transformers encoder family as ``hf_cat`` models (``reranker import``).

What is read, from a transformers or sentence-transformers (v3-v6) CrossEncoder directory:
``config.json`` (one label), the weights (through ``AutoModelForSequenceClassification``),
``tokenizer.json`` (WordPiece, BPE or Unigram, with the post-processor that lays out a pair), the
CrossEncoder's activation (Sigmoid or Identity) and ``max_length``. What is refused, and the message
each refusal gives, is :data:`REFUSALS` (listed in docs/import.md).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from reranker.config import EncoderConfig, ModelConfig
from reranker.errors import ConfigError
from reranker.models.checkpoint import Loaded
from reranker.models.hf_cat import SUPPORTED_FAMILIES, HfCat
from reranker.tokenization import Tokenizer

DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "gpt2", "gpt_neox", "mixtral")
"""Decoder families whose rerankers (next-token or last-token scoring) are refused."""

REFUSALS = {
    "remote code": "{src}: config.json has auto_map {auto_map}: models that need remote code are not served "
    "(their code is not in transformers; nothing from the model directory is executed)",
    "decoder": "{src}: model_type {model_type!r} is a decoder: LLM rerankers (scored from next-token or "
    "last-token logits) are not supported; supported encoder families: {families}",
    "family": "{src}: model_type {model_type!r} is not a supported encoder family; supported: {families}",
    "labels": "{src} classifies into {labels} labels; only one-label (relevance score) cross-encoders are supported",
    "activation": "{src}: activation {activation!r} is not supported; allowed: Sigmoid or Identity",
}
"""Why an import is refused, by reason (``str.format`` templates)."""

QUERY_PIECES = 64
"""Default query length in tokens (no special tokens): longer queries are refused, never cut."""


def _refuse(reason: str, **fields: Any) -> ConfigError:
    return ConfigError(REFUSALS[reason].format(families=", ".join(SUPPORTED_FAMILIES), **fields))


def check_family(src: Path, hf: dict[str, Any]) -> str:
    """The family (``model_type``) of a cross-encoder we can serve, or :class:`ConfigError` with the reason."""
    if hf.get("auto_map"):
        raise _refuse("remote code", src=src, auto_map=sorted(hf["auto_map"]))
    model_type = str(hf.get("model_type", ""))
    archs = hf.get("architectures") or []
    if model_type in DECODERS or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise _refuse("decoder", src=src, model_type=model_type)
    if model_type not in SUPPORTED_FAMILIES:
        raise _refuse("family", src=src, model_type=model_type)
    return model_type


def _labels(hf: dict[str, Any]) -> int:
    return int(hf.get("num_labels") or len(hf.get("id2label") or {0: 0}))


def encoder_shape(hf: dict[str, Any], max_position: int) -> EncoderConfig:
    """The encoder's shape as our config records it (reported by ListModels; the model is transformers')."""

    def first(*names: str, default: int = 1) -> int:
        return next((int(hf[n]) for n in names if hf.get(n) is not None), default)

    hidden = first("hidden_size", "dim")
    heads = first("num_attention_heads", "n_heads")
    return EncoderConfig(
        vocab_size=first("vocab_size"),
        hidden_size=hidden,
        num_layers=first("num_hidden_layers", "n_layers"),
        num_heads=heads if hidden % heads == 0 else 1,
        intermediate_size=first("intermediate_size", "hidden_dim"),
        max_position=max_position,
        type_vocab_size=max(1, first("type_vocab_size", default=1)),
    )


def position_limit(hf: dict[str, Any]) -> int:
    """Tokens the position embeddings allow (RoBERTa-style models start positions after the pad id)."""
    limit = int(hf.get("max_position_embeddings", 512))
    if hf.get("model_type") in ("roberta", "xlm-roberta"):
        limit -= int(hf.get("pad_token_id", 1)) + 1
    return limit


def _max_length(src: Path, st: dict[str, Any], hf: dict[str, Any]) -> int:
    """The CrossEncoder's ``max_length``, else the tokenizer's ``model_max_length``, within the positions."""
    limit = position_limit(hf)
    tokenizer_config = src / "tokenizer_config.json"
    from_tokenizer = json.loads(tokenizer_config.read_text()).get("model_max_length") if tokenizer_config.is_file() else None
    for value in (st.get("max_length"), from_tokenizer):
        if isinstance(value, int | float) and 0 < value < 1_000_000:
            return min(int(value), limit)
    return limit


def _sends_token_types(src: Path) -> bool:
    """Whether the checkpoint's own transformers tokenizer feeds ``token_type_ids`` to the model (its
    class's ``model_input_names``: BERT's and DeBERTa's do, RoBERTa's and XLM-R's do not)."""
    from transformers import AutoTokenizer

    try:
        names = AutoTokenizer.from_pretrained(str(src)).model_input_names
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"{src}: transformers cannot load its tokenizer: {exc}") from exc
    return "token_type_ids" in names


def import_hf_cross_encoder(
    src: Path,
    hf: dict[str, Any],
    st: dict[str, Any],
    *,
    sigmoid: bool,
    query_max_len: int | None = None,
    passage_max_len: int | None = None,
) -> Loaded:
    """A ``*ForSequenceClassification`` directory of a supported family as an ``hf_cat`` model.

    ``query_max_len`` (query tokens, default 64) and ``passage_max_len`` (the pair's tokens,
    special tokens included; default the CrossEncoder's ``max_length``) are the lengths served.

    Raises:
        ConfigError: a refused model (see :data:`REFUSALS`) or lengths that do not fit.
        ArtifactError: a tokenizer without a pair template, or weights that do not fit the config.
    """
    check_family(src, hf)
    labels = _labels(hf)
    if labels != 1:
        raise _refuse("labels", src=src, labels=labels)
    tokenizer = Tokenizer.from_dir(src)
    template = tokenizer.pair_template()
    if not _sends_token_types(src):  # the reference feeds no token types: the model's default, zeros
        template = dataclasses.replace(template, types=(0, 0, 0, 0, 0))
    pair_max_len = min(passage_max_len or _max_length(src, st, hf), position_limit(hf))
    query = query_max_len or min(QUERY_PIECES, pair_max_len - template.special_tokens - 1)
    config = ModelConfig(
        arch="hf_cat",
        encoder=encoder_shape(hf, pair_max_len),
        query_max_len=query,
        passage_max_len=pair_max_len - template.special_tokens - 1,
        cat_activation="sigmoid" if sigmoid else "none",
        hf_config={k: v for k, v in hf.items() if k not in ("architectures", "torch_dtype", "dtype")},
        pair_template=template.to_dict(),
        pair_max_len=pair_max_len,
    )
    model = HfCat(config)
    model.load_base_weights(str(src))
    return Loaded(model.eval(), tokenizer, config)


__all__ = ["DECODERS", "REFUSALS", "check_family", "encoder_shape", "import_hf_cross_encoder", "position_limit"]
