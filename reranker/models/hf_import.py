"""Import models saved by other libraries into reranker checkpoints (``reranker import``).

Supported (safetensors weights, a ``tokenizer.json`` or ``vocab.txt``):

* a cross-encoder saved by transformers (``*ForSequenceClassification``, one label) or by
  sentence-transformers' ``CrossEncoder`` (v3-v6): a BERT one -> ``bert_cat`` with BERT's pooler; one
  of another encoder family (RoBERTa, XLM-RoBERTa, DeBERTa-v2/v3, ModernBERT, ELECTRA, DistilBERT)
  -> ``hf_cat``, transformers' own model (:mod:`reranker.models.cross_import`); score = the logit,
  or its sigmoid when the CrossEncoder's config names a Sigmoid activation;
* a sentence-transformers bi-encoder (``modules.json``: Transformer, Pooling with CLS or mean
  tokens, optionally one Dense (bias; Tanh or Identity), optionally Normalize) -> ``bert_dot``
  (score = dot product, the cosine when normalised).

* a ColBERT checkpoint saved by Stanford ColBERT (``artifact.metadata``) or PyLate (``pylate`` modules)
  -> ``colbert`` (see :mod:`reranker.models.colbert_import`).

Refused, with a message saying why: bi-encoders and ColBERT models of non-BERT encoders, decoder
(LLM) rerankers, models needing remote code, classifiers with several labels, other activations,
max / weighted / last-token pooling, several Dense layers, prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from reranker.config import EncoderConfig, ModelConfig
from reranker.errors import ConfigError
from reranker.models import build_model
from reranker.models.bert import read_hf_config
from reranker.models.checkpoint import Loaded, save_checkpoint
from reranker.models.cross_import import check_family, import_hf_cross_encoder
from reranker.tokenization import Tokenizer

ST_CONFIG = "config_sentence_transformers.json"


def _module(type_name: str) -> str:
    """``sentence_transformers.models.Pooling`` (v2-v5) or ``...modules.pooling.Pooling`` (v6) -> ``Pooling``."""
    return type_name.rsplit(".", 1)[-1]


SIGMOID = ("torch.nn.modules.activation.Sigmoid", "torch.nn.Sigmoid", "Sigmoid")
IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity", "Identity", None)
TANH = ("torch.nn.modules.activation.Tanh", "torch.nn.Tanh", "Tanh")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def detect(src: Path) -> str:
    """'cross-encoder', 'bi-encoder', 'stanford-colbert', 'pylate', or ConfigError naming what the directory
    holds and what is allowed."""
    src = Path(src)
    if (src / "artifact.metadata").is_file():
        return "stanford-colbert"
    st_cfg = _read_json(src / ST_CONFIG) if (src / ST_CONFIG).is_file() else {}
    if st_cfg.get("model_type") == "CrossEncoder":  # sentence-transformers >= 5 saves CrossEncoders with modules
        return "cross-encoder"
    modules = src / "modules.json"
    if modules.is_file():
        types = [m.get("type", "") for m in json.loads(modules.read_text())]
        if any(t.startswith("pylate") for t in types) or st_cfg.get("model_type") == "ColBERT":
            return "pylate"
        return "bi-encoder"
    if not (src / "config.json").is_file():
        raise ConfigError(f"{src} has no config.json or modules.json: not a transformers / sentence-transformers model")
    hf = _read_json(src / "config.json")
    archs = hf.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        check_family(src, hf)  # ConfigError: remote code, a decoder, an unsupported family
        return "cross-encoder"
    check_family(src, hf)
    raise ConfigError(
        f"{src}: config.json names architectures {archs}; supported: *ForSequenceClassification "
        "(cross-encoders) or a sentence-transformers directory with modules.json (bi-encoders)"
    )


def _tokenizer(src: Path, config: ModelConfig) -> Tokenizer:
    tokenizer = Tokenizer.from_dir(src)
    if tokenizer.vocab_size > config.encoder.vocab_size:
        raise ConfigError(f"{src}: the tokenizer has {tokenizer.vocab_size} entries, the encoder {config.encoder.vocab_size}")
    return tokenizer


def _classifier_labels(src: Path, hf: dict[str, Any]) -> int:
    """Rows of the classifier in the weights (config.json may leave num_labels out)."""
    from safetensors import safe_open

    path = src / "model.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            if "classifier.bias" in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                return int(f.get_slice("classifier.bias").get_shape()[0])
    return int(hf.get("num_labels", len(hf.get("id2label") or {0: 0})))


def import_cross_encoder(src: Path, *, query_max_len: int | None = None, passage_max_len: int | None = None) -> Loaded:
    """A transformers / CrossEncoder ``*ForSequenceClassification`` directory of any supported family,
    BERT included, as ``hf_cat``: transformers' own model behind our graphs, so that scores and the
    cut of long passages are the reference library's (:mod:`reranker.models.cross_import`)."""
    hf = read_hf_config(src)
    labels = _classifier_labels(src, hf)
    if labels != 1:
        raise ConfigError(f"{src} classifies into {labels} labels; only one-label (relevance score) cross-encoders are supported")
    st = hf.get("sentence_transformers") or {}  # sentence-transformers <= 4 kept it in config.json
    if (src / ST_CONFIG).is_file():
        st = {**st, **_read_json(src / ST_CONFIG)}
    activation = st.get("activation_fn")
    if activation not in (*SIGMOID, *IDENTITY):
        raise ConfigError(f"{src}: activation {activation!r} is not supported; allowed: Sigmoid or Identity")
    if not (src / "model.safetensors").is_file():
        raise ConfigError(f"{src} has no model.safetensors: pickled weights (pytorch_model.bin) are not loaded")
    return import_hf_cross_encoder(
        src, hf, st, sigmoid=activation in SIGMOID, query_max_len=query_max_len, passage_max_len=passage_max_len
    )


def import_bi_encoder(src: Path, **lengths: int) -> Loaded:
    """A sentence-transformers bi-encoder directory (Transformer, Pooling, [Normalize]) as ``bert_dot``."""
    modules = json.loads((src / "modules.json").read_text())
    types = [_module(m.get("type", "")) for m in modules]
    if types[:2] != ["Transformer", "Pooling"]:
        raise ConfigError(f"{src}/modules.json has modules {types}; supported: Transformer, Pooling[, Normalize]")
    if types[2:] not in ([], ["Normalize"], ["Dense"], ["Dense", "Normalize"]):
        raise ConfigError(
            f"{src}/modules.json has {types[2:]} after pooling; supported: at most one Dense, then optionally Normalize"
        )
    st_cfg = _read_json(src / ST_CONFIG) if (src / ST_CONFIG).is_file() else {}
    if any(st_cfg.get("prompts", {}).values()):
        raise ConfigError(f"{src} uses prompts {st_cfg['prompts']}; models that prefix queries or passages are not supported")
    transformer = src / modules[0].get("path", "")
    pooling = _read_json(src / modules[1]["path"] / "config.json")
    if "pooling_mode" in pooling:  # sentence-transformers >= 6
        modes = [str(pooling["pooling_mode"]).replace("cls", "cls_token").replace("mean", "mean_tokens")]
    else:
        modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes not in (["cls_token"], ["mean_tokens"]):
        raise ConfigError(f"{src}: pooling {modes} is not supported; allowed: cls_token or mean_tokens alone")
    dense: dict[str, Any] = {}
    if "Dense" in types:
        dense = _read_json(src / modules[2]["path"] / "config.json")
        activation = dense.get("activation_function")
        if not dense.get("bias", True) or activation not in (*TANH, *IDENTITY):
            raise ConfigError(
                f"{src}: Dense with bias={dense.get('bias')} and activation {activation!r} is not "
                "supported; allowed: a bias and Tanh or Identity"
            )
    encoder = EncoderConfig.from_hf(read_hf_config(transformer))
    if dense and int(dense["in_features"]) != encoder.hidden_size:
        raise ConfigError(f"{src}: Dense reads {dense['in_features']} features, the encoder gives {encoder.hidden_size}")
    config = ModelConfig(
        arch="bert_dot",
        encoder=encoder,
        dot_pooling="cls" if modes == ["cls_token"] else "mean",
        dot_normalize="Normalize" in types,
        dot_dense_dim=int(dense.get("out_features", 0)),
        dot_dense_activation="tanh" if dense.get("activation_function") in TANH else "identity",
        **lengths,  # type: ignore[arg-type]
    )
    model = build_model(config)
    model.load_base_weights(str(transformer))
    if dense:
        _load_dense(model, src / modules[2]["path"])
    return Loaded(model.eval(), _tokenizer(transformer, config), config)


def _load_dense(model: torch.nn.Module, directory: Path) -> None:
    """The Linear layer of a sentence-transformers Dense module (``linear.weight``, ``linear.bias``)."""
    from safetensors.torch import load_file

    path = directory / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"{directory} has no model.safetensors (pickled Dense weights are not loaded)")
    tensors = load_file(str(path))
    layer = getattr(model, "dense", None)
    assert isinstance(layer, torch.nn.Linear)
    for name in ("weight", "bias"):
        own = getattr(layer, name)
        got = tensors.get(f"linear.{name}")
        if got is None or got.shape != own.shape:
            raise ConfigError(
                f"{path}: linear.{name} is {None if got is None else tuple(got.shape)}, expected {tuple(own.shape)}"
            )
        with torch.no_grad():
            own.copy_(got)


def import_model(
    src: str | Path, out: str | Path, *, query_max_len: int | None = None, passage_max_len: int | None = None
) -> dict[str, Any]:
    """Detect the format of ``src``, convert it and save a reranker checkpoint to ``out``; returns a summary.
    Lengths (tokens incl. [CLS]/[SEP]/markers) default to the checkpoint's own (ColBERT) or 32 / 202.
    Raises ConfigError (unsupported format, with the reason) or ArtifactError (unreadable weights)."""
    from reranker.models.colbert_import import import_pylate, import_stanford

    src = Path(src)
    kind = detect(src)
    if kind in ("stanford-colbert", "pylate"):
        given = {"query_max_len": query_max_len, "passage_max_len": passage_max_len}
        loaded = (import_stanford if kind == "stanford-colbert" else import_pylate)(src, **given)
    elif kind == "cross-encoder":
        loaded = import_cross_encoder(src, query_max_len=query_max_len, passage_max_len=passage_max_len)
    else:
        loaded = import_bi_encoder(src, query_max_len=query_max_len or 32, passage_max_len=passage_max_len or 202)
    save_checkpoint(out, loaded, {"imported_from": src.resolve().name, "import_format": kind, "steps": 0})
    return {
        "format": kind,
        "arch": loaded.config.arch,
        "out": str(out),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
    }


__all__ = ["detect", "import_bi_encoder", "import_cross_encoder", "import_model"]
