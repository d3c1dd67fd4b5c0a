"""Provisioning what ``reranker serve`` runs with no arguments: the default distilled student over
the TREC DL 2019 passages shipped with the project.

Runs before the server starts (from the CLI), never inside it: the ONNX artifact is made when missing
or stale and cached under ``$RERANKER_HOME`` (default ``~/.cache/reranker``). It is assembled without
torch from the ONNX kit the package ships with the default (:mod:`reranker.kit`), so the ``serve``
install serves it; only a checkpoint without a kit is exported, in a subprocess that needs the train
extra. The passage store is cached there too: :func:`default_spec` lets the server build it in the
background while it already serves (:mod:`reranker.engine.building`), :func:`ensure_default` builds
it now.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from reranker.artifact import Artifact
from reranker.config import DEFAULT_MODEL_DIR
from reranker.data import DataFolder
from reranker.engine import ModelSpec, passage_encoder
from reranker.errors import ArtifactError, ConfigError
from reranker.kit import assemble, kit_of
from reranker.manifest import sha256_file
from reranker.store import PassageStore
from reranker.store.build import build_store
from reranker.store.compress import default_codec

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"


DEFAULT_DATA = Path("data/msmarco-passage/trec-dl-2019")
"""The passages of the default store, relative to a clone of the repository."""


def default_data(cwd: Path | None = None) -> Path:
    """The TREC DL 2019 folder of a clone: under the current directory, else beside the installed
    package (an editable install). ConfigError naming ``--data`` when neither has it."""
    for root in (cwd or Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / DEFAULT_DATA / "passages.tsv.gz").is_file():
            return root / DEFAULT_DATA
    raise ConfigError(
        f"no passages for the default model's store: {DEFAULT_DATA} is neither under the current "
        "directory nor beside the installed package; give --data FOLDER (a data folder with "
        "passages.tsv.gz, e.g. a clone's data/msmarco-passage/trec-dl-2019) or --config FILE.toml"
    )


def home() -> Path:
    """The cache folder: ``$RERANKER_HOME``, default ``~/.cache/reranker``."""
    return Path(os.environ.get("RERANKER_HOME", Path.home() / ".cache" / "reranker"))


def _run(args: list[str]) -> None:
    command = [sys.executable, "-m", "reranker.cli", *args]
    log.info("running %s", " ".join(command[2:]))
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise ArtifactError(
            f"building the default model failed: '{' '.join(command[2:])}' exited "
            f"{result.returncode}; it needs the train extra (pip install 'reranker[train]')"
        )


def default_checkpoint(cache: Path) -> Path:
    """The shipped default student when present, else the zero-shot MiniLM ColBERT (made once)."""
    if (DEFAULT_MODEL_DIR / "manifest.json").is_file():
        return DEFAULT_MODEL_DIR
    ckpt = cache / "zero-shot-colbert"
    if not (ckpt / "manifest.json").is_file():
        _run(["init", "--arch", "colbert", "--init", "minilm", "--no-model-colbert-query-augmentation", "--out", str(ckpt)])
    return ckpt


def ensure_default_artifact(precision: str = "fp32") -> Artifact:
    """The default model's ONNX artifact (under :func:`home`), assembled or exported when missing or
    made from another shipped default. Raises :class:`ArtifactError` when the export fails."""
    cache = home() / DEFAULT_NAME
    artifact_dir = cache / f"onnx-{precision}"
    try:
        artifact = Artifact.open(artifact_dir)
        if (DEFAULT_MODEL_DIR / "manifest.json").is_file():  # a newer shipped default replaces the cached export
            made_from = artifact.manifest.get("checkpoint", {}).get("manifest_sha256")
            if made_from != sha256_file(DEFAULT_MODEL_DIR / "manifest.json"):
                raise ArtifactError(f"{artifact_dir} was exported from another model than {DEFAULT_MODEL_DIR}")
    except ArtifactError:
        ckpt = default_checkpoint(cache)
        if precision == "fp32" and kit_of(ckpt) is not None:
            log.info(
                "assembling the default model's ONNX graphs from %s/onnx into %s (first start, no torch)", ckpt, artifact_dir
            )
            assemble(ckpt, artifact_dir)
        else:
            log.info("exporting the default model %s to %s (first start)", ckpt, artifact_dir)
            _run(["export", "--model", str(ckpt), "--out", str(artifact_dir), "--precision", precision])
        artifact = Artifact.open(artifact_dir)
    return artifact


def store_dir(artifact: Artifact, data: Path, precision: str = "fp32") -> Path:
    """Where the default model's store of the passages of ``data`` is cached (named by its codec)."""
    codec = default_codec(artifact.spec)  # ColBERT: residual 1 bit, 50 bytes per token instead of 768 (README)
    return home() / DEFAULT_NAME / f"store-{precision}-{codec.name}{codec.nbits if codec.fitted else ''}-{Path(data).name}"


def default_spec(data: Path, *, precision: str = "fp32") -> ModelSpec:
    """The default model as served by ``reranker serve``: its artifact made now when missing (seconds:
    assembled from the shipped ONNX kit), its store of the passages of ``data`` built in the
    background while the model already serves (``build_store``: candidates by id are scored from
    their text until the store is ready). Raises :class:`ArtifactError` when the artifact cannot be
    made and :class:`ConfigError` when ``data`` has no passages."""
    artifact = ensure_default_artifact(precision)
    if DataFolder.open(data).passages_path is None:  # the engine reads the passages (once), not here
        raise ConfigError(f"{data} has no passages.tsv(.gz) to build the default passage store from")
    store = store_dir(artifact, data, precision)
    return ModelSpec(DEFAULT_NAME, str(artifact.directory), str(store), passages=str(data), build_store=True)


def ensure_default(data: Path, *, precision: str = "fp32") -> tuple[Path, Path]:
    """(artifact, store) directories of the default model, building what is missing or stale now
    (the store in the foreground, with a progress bar).

    Raises :class:`ArtifactError` when the export fails and :class:`ConfigError` when ``data``
    has no passages.
    """
    artifact = ensure_default_artifact(precision)
    artifact_dir = artifact.directory
    codec = default_codec(artifact.spec)
    store_dir_ = store_dir(artifact, data, precision)
    try:
        PassageStore.open(store_dir_, artifact)
    except ArtifactError:
        folder = DataFolder.open(data)
        if not folder.passages:
            raise ConfigError(f"{data} has no passages.tsv(.gz) to build the default passage store from") from None
        log.info(
            "building the passage store of %d passages of %s (first start; cached in %s)", len(folder.passages), data, store_dir_
        )
        build_store(artifact, folder.passages, store_dir_, encode=passage_encoder(artifact), codec=codec)
    return artifact_dir, store_dir_
