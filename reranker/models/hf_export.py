"""Write a BERT-cat checkpoint as a Hugging Face ``BertForSequenceClassification`` directory, so that
peers (sentence-transformers' CrossEncoder) can score with the very same weights.

Our head reads the last layer's [CLS] vector directly; Hugging Face's reads ``tanh(pooler(CLS))``.
The pooler is set to ``eps * I`` and the classifier to ``head / eps``, so that
``classifier(tanh(eps * cls)) = head(cls) + O(eps^2 |cls|^3)``: the scores agree to about 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from reranker.arch import spec
from reranker.errors import ConfigError
from reranker.models.checkpoint import load_checkpoint

EPS = 1e-3


def to_hf_cross_encoder(checkpoint: str | Path, out: str | Path) -> Path:
    loaded = load_checkpoint(checkpoint)
    cfg = loaded.config
    if spec(cfg.arch).split:
        raise ConfigError(f"only bert_cat checkpoints are cross-encoders; {checkpoint} is {cfg.arch}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enc = cfg.encoder
    state = {f"bert.{k[len('bert.') :]}": v.contiguous() for k, v in loaded.model.state_dict().items() if k.startswith("bert.")}
    hidden = enc.hidden_size
    state["bert.pooler.dense.weight"] = torch.eye(hidden) * EPS
    state["bert.pooler.dense.bias"] = torch.zeros(hidden)
    head = loaded.model.head
    assert isinstance(head, torch.nn.Linear) and head.bias is not None
    state["classifier.weight"] = (head.weight.detach() / EPS).contiguous()
    state["classifier.bias"] = head.bias.detach().clone()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "num_labels": 1,
        "vocab_size": enc.vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": enc.num_layers,
        "num_attention_heads": enc.num_heads,
        "intermediate_size": enc.intermediate_size,
        "hidden_act": "gelu",
        "max_position_embeddings": enc.max_position,
        "type_vocab_size": enc.type_vocab_size,
        "layer_norm_eps": enc.layer_norm_eps,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    loaded.tokenizer.save(out)
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizerFast",
                "do_lower_case": True,
                "model_max_length": enc.max_position,
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "mask_token": "[MASK]",
                "unk_token": "[UNK]",
            },
            indent=2,
        )
        + "\n"
    )
    return out
