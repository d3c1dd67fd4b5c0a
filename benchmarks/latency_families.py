"""Cross-encoders of other encoder families at their real base shapes, for the latency benchmark
(``benchmarks.latency --families xlm-roberta,deberta-v3,modernbert``): what serving an imported
XLM-R, DeBERTa-v3 or ModernBERT re-ranker costs here, 100 candidates per request.

Random weights of the published base configurations (latency does not depend on the weights) with
a tokenizer of the family's kind (byte-level BPE or Unigram) trained on the benchmark's passages,
so that texts become about as many tokens as with the real vocabulary. Each goes through
``reranker import`` and ``reranker export`` as a user's model would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BASE = {"hidden_size": 768, "num_attention_heads": 12, "num_labels": 1}
FAMILIES: dict[str, dict[str, Any]] = {
    "xlm-roberta": {
        "model_type": "xlm-roberta",
        "tokenizer": "unigram-roberta",
        **BASE,
        "num_hidden_layers": 12,
        "intermediate_size": 3072,
        "vocab_size": 250002,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "pad_token_id": 1,
    },
    "deberta-v3": {
        "model_type": "deberta-v2",
        "tokenizer": "unigram-bert",
        **BASE,
        "num_hidden_layers": 12,
        "intermediate_size": 3072,
        "vocab_size": 128100,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "relative_attention": True,
        "position_buckets": 256,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "pad_token_id": 0,
    },
    "modernbert": {
        "model_type": "modernbert",
        "tokenizer": "bpe-bert",
        **BASE,
        "num_hidden_layers": 22,
        "intermediate_size": 1152,
        "vocab_size": 50368,
        "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 3,
        "local_attention": 128,
        "pad_token_id": 0,
    },
}
"""The published base configurations (xlm-roberta-base, deberta-v3-base, ModernBERT-base), one label."""

PAIR_MAX_LEN = 512


def _tokenizer(kind: str, texts: list[str]) -> tuple[Any, dict[str, str]]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    bert = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    roberta = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    if kind == "bpe-bert":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=30000, special_tokens=bert, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        specials = bert
    else:
        specials = roberta if kind == "unigram-roberta" else bert
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=30000, special_tokens=specials, unk_token=specials[3])
    tok.train_from_iterator(texts, trainer)
    if specials is roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        roles = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>"}
        roles |= {"pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
    else:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        roles = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    return tok, roles


def build_family(name: str, work: Path, texts: list[str]) -> Path:
    """The fp32 artifact of family ``name`` under ``work`` (built once: HF directory, import, export)."""
    import torch
    import transformers

    from reranker.models.hf_import import import_model
    from reranker_export.onnx_export import export_model

    art = work / f"onnx-{name}-base-fp32"
    if (art / "manifest.json").is_file():
        return art
    settings = dict(FAMILIES[name])
    kind = settings.pop("tokenizer")
    hf_dir, ckpt = work / f"hf-{name}-base", work / f"ckpt-{name}-base"
    tok, roles = _tokenizer(kind, texts)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=PAIR_MAX_LEN, **roles)
    config = transformers.AutoConfig.for_model(**settings)
    torch.manual_seed(0)
    print(f"benchmarks.latency: a random {name} base cross-encoder ({config.num_hidden_layers} layers)", flush=True)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    import_model(hf_dir, ckpt)
    print(f"benchmarks.latency: exporting {art.name}", flush=True)
    export_model(ckpt, art)
    return art


def served(families: list[str], work: Path) -> list[dict[str, str]]:
    """The benchmark's model entries of ``families`` (cross-encoders: passages sent as text)."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"benchmarks.latency: unknown families {unknown}; allowed: {', '.join(FAMILIES)}")
    return [{"name": f"{f}-base", "arch": "hf_cat", "family": f, "artifact": str(work / f"onnx-{f}-base-fp32")} for f in families]
