"""Amending a model's configuration after training with what was picked or fitted on validation
queries (a fusion choice per first-stage kind, a calibration): ``config.json`` and the manifest are
rewritten, and a serving kit made from the checkpoint stays bound to it (its graphs do not change)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reranker.config import ModelConfig


def amend_model_config(
    model_dir: str | Path, changes: Mapping[str, Any], record_key: str, record: Mapping[str, Any]
) -> ModelConfig:
    """Set ``changes`` (ModelConfig fields) in ``model_dir/config.json``, record how under ``record_key``
    in its manifest (merged with what is there), re-write the manifest's checksums and re-bind a kit
    (``onnx/kit.json``) made from the previous manifest. The model is verified first: a changed file is
    never re-sealed (ArtifactError); ConfigError for values the configuration refuses."""
    from reranker.kit import KIT_DIR, KIT_FILE, kit_of
    from reranker.manifest import MANIFEST, read_manifest, sha256_file, verify_manifest, write_manifest
    from reranker.models.checkpoint import CHECKPOINT_KIND

    model_dir = Path(model_dir)
    verify_manifest(model_dir, CHECKPOINT_KIND)
    config = dataclasses.replace(ModelConfig.load(model_dir / "config.json"), **changes)  # validated
    before = sha256_file(model_dir / MANIFEST)
    config.save(model_dir / "config.json")
    manifest = read_manifest(model_dir, CHECKPOINT_KIND)
    info = {k: v for k, v in manifest.items() if k not in ("kind", "files", "provenance")}
    info[record_key] = {**info.get(record_key, {}), **json.loads(json.dumps(dict(record)))}
    write_manifest(model_dir, CHECKPOINT_KIND, info, list(manifest["files"]))
    kit = kit_of(model_dir)
    if kit is not None and kit["checkpoint_manifest_sha256"] == before:
        path = model_dir / KIT_DIR / KIT_FILE
        path.write_text(path.read_text().replace(before, sha256_file(model_dir / MANIFEST)))
    return config
