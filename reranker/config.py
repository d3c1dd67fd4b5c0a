"""Typed, frozen model configuration shared by training (torch) and serving (ONNX Runtime).

Nothing here imports torch: the serving layer reads the same ``config.json`` to know the
architecture, its maximum lengths and dimensions.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reranker.arch import ARCHES, Arch, spec
from reranker.calibration import Calibration
from reranker.errors import ConfigError
from reranker.fusion import first_stage_rules

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
"""The committed default student (``--model default``; what ``reranker serve`` loads when present)."""

__all__ = ["ARCHES", "DEFAULT_MODEL_DIR", "Arch", "EncoderConfig", "ModelConfig"]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a BERT encoder (the fields of a Hugging Face ``BertConfig`` that matter here)."""

    vocab_size: int = 30522
    """Word-piece vocabulary size."""
    hidden_size: int = 384
    """Width of every token vector."""
    num_layers: int = 6
    """Transformer layers actually used (may be fewer than the base model has)."""
    num_heads: int = 12
    """Attention heads per layer; must divide ``hidden_size``."""
    intermediate_size: int = 1536
    """Width of the feed-forward block."""
    max_position: int = 512
    """Number of learned position embeddings."""
    type_vocab_size: int = 2
    """Number of segment (token type) embeddings."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon."""
    dropout: float = 0.1
    """Dropout on hidden states and attention probabilities while training."""

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, f"encoder.{name} must be a positive integer, got {value!r}")
        _check(
            self.hidden_size % self.num_heads == 0,
            f"encoder.num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})",
        )
        _check(0.0 <= self.dropout < 1.0, f"encoder.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_hf(cls, hf: dict[str, Any], num_layers: int | None = None) -> EncoderConfig:
        """Build from a Hugging Face BERT ``config.json``; ``num_layers`` keeps only the first N."""
        model_type = hf.get("model_type", "bert")
        _check(model_type in ("bert",), f"only BERT-family encoders are supported, config.json says model_type={model_type!r}")
        _check(hf.get("hidden_act", "gelu") in ("gelu",), f"hidden_act must be 'gelu', got {hf.get('hidden_act')!r}")
        total = int(hf["num_hidden_layers"])
        layers = total if num_layers is None else num_layers
        _check(1 <= layers <= total, f"num_layers must be in 1..{total} for this base model, got {layers}")
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            num_layers=layers,
            num_heads=int(hf["num_attention_heads"]),
            intermediate_size=int(hf["intermediate_size"]),
            max_position=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", 2)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            dropout=float(hf.get("hidden_dropout_prob", 0.1)),
        )


TK_KERNEL_MUS = (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a ranking model, its tokenisation and its passage state."""

    arch: Arch
    """One of ``bert_cat``, ``bert_dot``, ``colbert``, ``prett``, ``tk``."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Shape of the BERT encoder (TK uses only its word embeddings and hidden size)."""
    query_max_len: int = 32
    """Query tokens including [CLS]/[SEP] (the paper: 30 word pieces)."""
    passage_max_len: int = 202
    """Passage tokens including [CLS]/[SEP] (the paper: 200 word pieces)."""
    dot_pooling: Literal["cls", "mean"] = "mean"
    """BERT-dot: how a sequence becomes one vector (the paper: CLS; MiniLM was trained with mean)."""
    dot_normalize: bool = False
    """BERT-dot: L2-normalise both vectors, so the score is their cosine (as sentence-transformers
    models such as all-MiniLM-L6-v2 were trained to score)."""
    dot_dense_dim: int = 0
    """BERT-dot: width of a Linear layer (with bias) after pooling, as a sentence-transformers Dense
    module; 0 = none."""
    dot_dense_activation: Literal["identity", "tanh"] = "identity"
    """BERT-dot: the activation after that Linear layer."""
    colbert_dim: int = 0
    """ColBERT: projection width of token vectors; 0 keeps the encoder width (no projection)."""
    colbert_query_augmentation: bool = True
    """ColBERT: pad queries to ``query_max_len`` with [MASK] tokens that take part in scoring."""
    colbert_query_marker: int = -1
    """ColBERT: token id placed after [CLS] in every query (Stanford ColBERT's [unused0], PyLate's
    "[Q] "); -1 = none. Counts in ``query_max_len``."""
    colbert_passage_marker: int = -1
    """ColBERT: token id placed after [CLS] in every passage ([unused1], "[D] "); -1 = none."""
    colbert_unattended_id: int = -1
    """ColBERT: a query token id BERT does not attend to, whose vector still takes part in MaxSim: the
    [MASK] id for unattended query augmentation (Stanford ``attend_to_mask_tokens=false``, PyLate
    ``attend_to_expansion_tokens=false``); -1 = every real token is attended."""
    colbert_skiplist: tuple[int, ...] = ()
    """ColBERT: passage token ids whose vectors are left out of MaxSim and of the passage store
    (punctuation: Stanford ``mask_punctuation``, PyLate ``skiplist_words``)."""
    prett_split_layer: int = 3
    """PreTT: layers below this run on query and passage separately; the rest run jointly."""
    tk_layers: int = 2
    """TK: contextualiser layers."""
    tk_heads: int = 8
    """TK: attention heads of the contextualiser."""
    tk_ff_size: int = 384
    """TK: feed-forward width of the contextualiser."""
    tk_kernel_mus: tuple[float, ...] = TK_KERNEL_MUS
    """TK: RBF kernel centres."""
    tk_kernel_sigma: float = 0.1
    """TK: RBF kernel width."""
    freeze_word_embeddings: bool = False
    """Keep the base model's word-embedding matrix fixed while training."""
    cat_pooler: bool = False
    """BERT-cat: score ``Linear(tanh(Dense(CLS)))`` through BERT's pooler, as Hugging Face's
    ``BertForSequenceClassification`` does (imported cross-encoders); False: ``Linear(CLS)``."""
    cat_activation: Literal["none", "sigmoid"] = "none"
    """BERT-cat: the score is the logit (none) or its sigmoid (a sentence-transformers CrossEncoder
    saved with a Sigmoid activation)."""
    hf_config: dict[str, Any] | None = None
    """hf_cat: the imported cross-encoder's transformers ``config.json`` (any encoder family), which
    rebuilds it with ``AutoModelForSequenceClassification``; colbert: the encoder of an imported
    PyLate / ColBERT model of another family (``AutoModel``); None: our BERT."""
    pair_template: dict[str, list[int]] | None = None
    """hf_cat: the tokenizer's pair layout (:class:`reranker.tokenization.PairTemplate` as a dict)."""
    first_stage_fusion: dict[str, dict[str, Any]] | None = None
    """The fusion with the first stage picked on validation lists, per first-stage kind (``bm25``,
    ``dense``, ``sparse``: ``{"rule": ..., "weight": ...}``), shipped with the model: applied when a
    request, a served model or ``reranker evaluate --first-stage`` names the kind."""
    calibration: dict[str, Any] | None = None
    """Platt scaling of the score into P(relevant) (:class:`reranker.calibration.Calibration` as a
    dict), fitted on validation queries by ``reranker calibrate``; None: results carry no relevance."""
    pair_max_len: int = 0
    """hf_cat: tokens of the packed pair the model reads, special tokens included (the reference
    library's ``max_length``); the passage is cut to fit beside the query, never the query."""

    def __post_init__(self) -> None:
        arch = spec(self.arch)  # ConfigError naming the allowed architectures
        _check(isinstance(self.encoder, EncoderConfig), "encoder must be an EncoderConfig")
        _check(
            3 <= self.query_max_len <= self.encoder.max_position,
            f"query_max_len must be in 3..{self.encoder.max_position}, got {self.query_max_len}",
        )
        _check(
            3 <= self.passage_max_len <= self.encoder.max_position,
            f"passage_max_len must be in 3..{self.encoder.max_position}, got {self.passage_max_len}",
        )
        _check(self.dot_pooling in ("cls", "mean"), f"dot_pooling must be 'cls' or 'mean', got {self.dot_pooling!r}")
        _check(
            self.dot_dense_dim >= 0 and self.dot_dense_activation in ("identity", "tanh"),
            f"dot_dense_dim must be >= 0 and dot_dense_activation 'identity' or 'tanh', got {self.dot_dense_dim} "
            f"and {self.dot_dense_activation!r}",
        )
        _check(
            self.cat_activation in ("none", "sigmoid"), f"cat_activation must be 'none' or 'sigmoid', got {self.cat_activation!r}"
        )
        _check(self.colbert_dim >= 0, f"colbert_dim must be >= 0 (0 = no projection), got {self.colbert_dim}")
        token_ids = (self.colbert_query_marker, self.colbert_passage_marker, self.colbert_unattended_id)
        _check(
            all(-1 <= t < self.encoder.vocab_size for t in token_ids)
            and all(0 <= t < self.encoder.vocab_size for t in self.colbert_skiplist),
            f"colbert_query_marker, colbert_passage_marker, colbert_unattended_id (-1 = none) and colbert_skiplist "
            f"must be token ids below vocab_size {self.encoder.vocab_size}, got {token_ids} and {self.colbert_skiplist}",
        )
        _check(
            self.arch == "colbert" or (token_ids == (-1, -1, -1) and not self.colbert_skiplist),
            f"colbert_query_marker, colbert_passage_marker, colbert_unattended_id and colbert_skiplist are for "
            f"arch colbert, not {self.arch}",
        )
        if arch.layer_split:
            _check(
                1 <= self.prett_split_layer < self.encoder.num_layers,
                f"prett_split_layer must be in 1..{self.encoder.num_layers - 1} for a "
                f"{self.encoder.num_layers}-layer encoder, got {self.prett_split_layer}",
            )
        first_stage_rules(self.first_stage_fusion)  # ConfigError for unknown kinds or bad rules
        Calibration.from_dict(self.calibration)
        imported = (self.hf_config, self.pair_template, self.pair_max_len)
        if self.arch == "hf_cat":
            _check(
                isinstance(self.hf_config, dict) and "model_type" in self.hf_config and isinstance(self.pair_template, dict),
                "an hf_cat model needs hf_config (a transformers config.json) and pair_template",
            )
            template: dict[str, list[int]] = self.pair_template  # type: ignore[assignment]
            specials = sum(len(template[k]) for k in ("prefix", "middle", "suffix"))
            _check(
                self.query_max_len + specials + 1 <= self.pair_max_len <= self.encoder.max_position,
                f"pair_max_len must be in {self.query_max_len + specials + 1}..{self.encoder.max_position} (the query, "
                f"{specials} special tokens and one passage token), got {self.pair_max_len}",
            )
        else:
            _check(imported[1:] == (None, 0), f"pair_template and pair_max_len are for arch hf_cat, not {self.arch}")
            _check(
                self.hf_config is None or (self.arch == "colbert" and "model_type" in self.hf_config),
                f"hf_config (transformers' own encoder) is for arch hf_cat or colbert, not {self.arch}",
            )
        if arch.packs_pair and self.arch != "hf_cat":
            _check(
                self.query_max_len + self.passage_max_len - 1 <= self.encoder.max_position,
                f"query_max_len + passage_max_len - 1 must fit the position embeddings ({self.encoder.max_position})",
            )
        _check(
            self.tk_layers >= 1 and self.tk_heads >= 1 and self.tk_ff_size >= 1,
            "tk_layers, tk_heads and tk_ff_size must be positive",
        )
        _check(
            self.encoder.hidden_size % self.tk_heads == 0,
            f"tk_heads ({self.tk_heads}) must divide hidden_size ({self.encoder.hidden_size})",
        )
        _check(len(self.tk_kernel_mus) > 0 and self.tk_kernel_sigma > 0, "TK needs at least one kernel and a positive sigma")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tk_kernel_mus"] = list(self.tk_kernel_mus)
        data["colbert_skiplist"] = list(self.colbert_skiplist)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown model config keys {unknown}; allowed: {sorted(known)}")
        enc = data.pop("encoder", {})
        enc_known = {f.name for f in dataclasses.fields(EncoderConfig)}
        bad = sorted(set(enc) - enc_known)
        _check(not bad, f"unknown encoder config keys {bad}; allowed: {sorted(enc_known)}")
        if "tk_kernel_mus" in data:
            data["tk_kernel_mus"] = tuple(float(x) for x in data["tk_kernel_mus"])
        if "colbert_skiplist" in data:
            data["colbert_skiplist"] = tuple(int(x) for x in data["colbert_skiplist"])
        return cls(encoder=EncoderConfig(**enc), **data)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read model config {path}: {exc}") from exc
        return cls.from_dict(data)
