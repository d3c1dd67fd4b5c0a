"""Import ColBERT checkpoints as Stanford ColBERT (colbert-ai) and PyLate save them -> ``colbert``.

Both are a BERT encoder plus a Linear projection without bias, scored by MaxSim of L2-normalised
token vectors, with the same token layout (read from colbert-ai 0.2.22 ``QueryTokenizer`` /
``DocTokenizer`` / ``ColBERT.doc`` and PyLate 1.6.0 ``ColBERT.tokenize`` / ``encode``):

* query ``[CLS] marker pieces [SEP]``, padded to the query length with [MASK] tokens whose vectors
  take part in MaxSim; BERT attends to them or not (Stanford ``attend_to_mask_tokens``, PyLate
  ``attend_to_expansion_tokens``; PyLate may turn the padding off, ``do_query_expansion``);
* document ``[CLS] marker pieces [SEP]``; the vectors of skiplisted tokens (punctuation) are left out.

Stanford: ``artifact.metadata`` (ColBERTConfig JSON), ``config.json`` + ``model.safetensors`` holding
``bert.*`` and ``linear.weight`` (dim x hidden); markers are vocabulary tokens (``[unused0]``,
``[unused1]``); the skiplist is the first word piece of each ``string.punctuation`` character.
PyLate: a sentence-transformers directory (Transformer, then one ``pylate.models.Dense.Dense``
without bias, Identity activation), ``config_sentence_transformers.json`` with ``query_prefix`` /
``document_prefix`` (tokens added to the tokenizer, e.g. "[Q] "), ``query_length`` /
``document_length``, ``do_query_expansion``, ``attend_to_expansion_tokens``, ``skiplist_words``
(each mapped to its token id, [UNK] when it is not one). Defaults are those of the libraries.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from reranker.config import EncoderConfig, ModelConfig
from reranker.errors import ConfigError
from reranker.models import build_model
from reranker.models.bert import read_hf_config, read_hf_tensors
from reranker.models.checkpoint import Loaded
from reranker.models.colbert import ColBERT
from reranker.models.cross_import import check_family, encoder_shape, position_limit
from reranker.tokenization import Tokenizer

METADATA = "artifact.metadata"
ST_CONFIG = "config_sentence_transformers.json"
IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity", "Identity", None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _token_id(tokenizer: Tokenizer, token: str, where: str) -> int:
    found = tokenizer.hf.token_to_id(token)
    if found is None:
        raise ConfigError(f"{where}: the marker token {token!r} is not in the tokenizer's vocabulary")
    return int(found)


def _build(src: Path, transformer: Path, tokenizer: Tokenizer, projection: torch.Tensor, **fields: Any) -> Loaded:
    """A ``colbert`` model with ``transformer``'s encoder and ``projection`` (dim, hidden) as its Linear:
    a BERT as our own encoder, another supported family (ModernBERT, XLM-RoBERTa, ...) as transformers'."""
    if tokenizer.mask_id < 0 and fields.get("colbert_query_augmentation", True):
        raise ConfigError(f"{src}: the tokenizer has no mask token ([MASK] or <mask>) to pad queries with")
    hf = read_hf_config(transformer)
    if hf.get("model_type", "bert") != "bert":
        check_family(src, hf)  # ConfigError: remote code, a decoder, an unsupported family
        encoder = encoder_shape(hf, position_limit(hf))
        fields = {**fields, "hf_config": {k: v for k, v in hf.items() if k not in ("architectures", "torch_dtype", "dtype")}}
    else:
        encoder = EncoderConfig.from_hf(hf)
    if projection.dim() != 2 or projection.shape[1] != encoder.hidden_size:
        raise ConfigError(f"{src}: the projection has shape {tuple(projection.shape)}; expected (dim, {encoder.hidden_size})")
    if tokenizer.vocab_size > encoder.vocab_size:
        raise ConfigError(f"{src}: the tokenizer has {tokenizer.vocab_size} entries, the encoder {encoder.vocab_size}")
    config = ModelConfig(arch="colbert", encoder=encoder, colbert_dim=int(projection.shape[0]), **fields)
    model = build_model(config)
    model.load_base_weights(str(transformer))
    assert isinstance(model, ColBERT) and model.projection is not None  # colbert_dim > 0
    with torch.no_grad():
        model.projection.weight.copy_(projection)
    return Loaded(model.eval(), tokenizer, config)


def _lengths(src: Path, lengths: dict[str, int | None], query: int, passage: int, padded: bool) -> dict[str, int]:
    """The checkpoint's lengths unless overridden; the query length of a [MASK]-padded model is fixed."""
    q = lengths.get("query_max_len") or query
    if padded and q != query:
        raise ConfigError(f"{src} pads queries to {query} tokens; --query-max-len {q} would change its scores")
    return {"query_max_len": q, "passage_max_len": lengths.get("passage_max_len") or passage}


def import_stanford(src: Path, **lengths: int | None) -> Loaded:
    """A Stanford ColBERT (colbert-ai) checkpoint directory as a ``colbert`` model.
    ConfigError names what is not supported (L2 similarity, FLIPR interaction, unknown markers)."""
    meta = _read_json(src / METADATA)
    if meta.get("similarity", "cosine") != "cosine" or meta.get("interaction", "colbert") != "colbert":
        raise ConfigError(
            f"{src}: similarity {meta.get('similarity')!r} / interaction {meta.get('interaction')!r} "
            "is not supported; allowed: cosine with the colbert interaction"
        )
    tokenizer = Tokenizer.from_dir(src)
    hidden = EncoderConfig.from_hf(read_hf_config(src)).hidden_size
    dim = int(meta.get("dim", 128))
    linear = read_hf_tensors(src, {"linear.weight": torch.Size([dim, hidden])})["linear.weight"]
    skiplist: tuple[int, ...] = ()
    if meta.get("mask_punctuation", True):
        firsts = {tokenizer.hf.encode(symbol, add_special_tokens=False).ids[0] for symbol in string.punctuation}
        skiplist = tuple(sorted(firsts))
    attend = bool(meta.get("attend_to_mask_tokens", False))
    return _build(
        src,
        src,
        tokenizer,
        linear,
        **_lengths(src, lengths, int(meta.get("query_maxlen", 32)), int(meta.get("doc_maxlen", 220)), True),
        colbert_query_marker=_token_id(tokenizer, meta.get("query_token_id", "[unused0]"), str(src)),
        colbert_passage_marker=_token_id(tokenizer, meta.get("doc_token_id", "[unused1]"), str(src)),
        colbert_query_augmentation=True,
        colbert_unattended_id=-1 if attend else tokenizer.mask_id,
        colbert_skiplist=skiplist,
    )


def import_pylate(src: Path, **lengths: int | None) -> Loaded:
    """A PyLate ColBERT directory (Transformer, one Dense without bias) as a ``colbert`` model.
    ConfigError names what is not supported (other modules, bias, activations, residual, no prefix)."""
    try:
        modules = list(json.loads((src / "modules.json").read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {src}/modules.json: {exc}") from exc
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if types != ["Transformer", "Dense"]:
        raise ConfigError(f"{src}/modules.json has modules {types}; supported: Transformer, then one Dense")
    dense_dir = src / modules[1]["path"]
    dense = _read_json(dense_dir / "config.json")
    if dense.get("bias", True) or dense.get("activation_function") not in IDENTITY or dense.get("use_residual"):
        raise ConfigError(
            f"{src}: Dense with bias={dense.get('bias')}, activation {dense.get('activation_function')!r}"
            f", use_residual={dense.get('use_residual')} is not supported; allowed: no bias, Identity, "
            "no residual"
        )
    if not (dense_dir / "model.safetensors").is_file():
        raise ConfigError(f"{dense_dir} has no model.safetensors (pickled Dense weights are not loaded)")
    from safetensors.torch import load_file

    linear = load_file(str(dense_dir / "model.safetensors")).get("linear.weight")
    if linear is None:
        raise ConfigError(f"{dense_dir}/model.safetensors has no linear.weight")
    st = _read_json(src / ST_CONFIG) if (src / ST_CONFIG).is_file() else {}
    transformer = src / modules[0].get("path", "")
    tokenizer = Tokenizer.from_dir(transformer)
    prefixes = [st.get("query_prefix", "[Q] "), st.get("document_prefix", "[D] ")]
    if "" in prefixes or None in prefixes:
        raise ConfigError(f"{src}: empty query/document prefixes {prefixes} are not supported; allowed: a marker token")
    found = (tokenizer.hf.token_to_id(w) for w in st.get("skiplist_words", list(string.punctuation)))
    skiplist = sorted({tokenizer.unk_id if t is None else int(t) for t in found})  # as convert_tokens_to_ids
    expand = bool(st.get("do_query_expansion", True))
    attend = expand and bool(st.get("attend_to_expansion_tokens", False))
    return _build(
        src,
        transformer,
        tokenizer,
        linear,
        **_lengths(src, lengths, int(st.get("query_length", 32)), int(st.get("document_length", 180)), expand),
        colbert_query_marker=_token_id(tokenizer, prefixes[0], str(src)),
        colbert_passage_marker=_token_id(tokenizer, prefixes[1], str(src)),
        colbert_query_augmentation=expand,
        colbert_unattended_id=tokenizer.mask_id if expand and not attend else -1,
        colbert_skiplist=tuple(skiplist),
    )


__all__ = ["import_pylate", "import_stanford"]
