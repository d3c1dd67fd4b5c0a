"""The serving kit shipped inside the package: ONNX graphs without their weights, and how to assemble
an artifact from them without torch.

A checkpoint's ``onnx/`` folder (written by ``reranker ship-onnx``, see ``reranker_export.kit``) holds
the exported graphs with every large weight moved out to *external data* in one file,
``weights.bin``, which is not shipped: ``kit.json`` says, for each slice of that file, which tensor of
the checkpoint's ``model.safetensors`` fills it (cast to float32, transposed where the graph wants
the transpose) or that it is the word-embedding matrix, shipped int8 per row in
``word_embeddings.int8.safetensors`` (the checkpoint itself leaves that matrix out and reads it from
the base model's package, which needs torch to install). :func:`assemble` writes ``weights.bin``,
checks its sha256 against ``kit.json`` and writes an ordinary, manifest-verified artifact directory:
numpy and safetensors' numpy reader only, no torch, no transformers, no onnx package.

So the package carries the 21.7 MB fp16 checkpoint once (training and serving read the same
blob), the int8 word embeddings (11.8 MB) and graphs of a few hundred kilobytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from reranker.artifact import ARTIFACT_KIND
from reranker.errors import ArtifactError
from reranker.manifest import MANIFEST, sha256_file, write_manifest

KIT_DIR = "onnx"
KIT_FILE = "kit.json"
WEIGHTS_BIN = "weights.bin"
EMBEDDINGS_FILE = "word_embeddings.int8.safetensors"
EMBEDDINGS_SOURCE = "@word_embeddings"
"""The source name of the int8 word embeddings in ``kit.json``."""


def _load_numpy(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file  # the numpy reader: no torch

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def dequantize_rows(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 rows times their float32 scale -> float32 ``[rows, dim]``.

    >>> dequantize_rows(np.array([[127, -64]], np.int8), np.array([0.5], np.float32)).tolist()
    [[63.5, -32.0]]
    """
    return q.astype(np.float32) * scales.astype(np.float32)[:, None]


def kit_of(checkpoint: Path) -> dict[str, Any] | None:
    """The parsed ``kit.json`` of a checkpoint directory, or None when it ships no kit."""
    path = Path(checkpoint) / KIT_DIR / KIT_FILE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc


def weights_bytes(checkpoint: Path, kit: dict[str, Any]) -> bytes:
    """The content of ``weights.bin``: every slice of ``kit['tensors']`` filled from its source, in
    offset order. Raises ArtifactError when a source is missing or has another shape."""
    checkpoint = Path(checkpoint)
    tensors = _load_numpy(checkpoint / "model.safetensors")
    sources: dict[str, np.ndarray] = {}
    out = bytearray(int(kit["weights_bytes"]))
    for entry in kit["tensors"]:
        name = entry["source"]
        if name not in sources:
            if name == EMBEDDINGS_SOURCE:
                packed = _load_numpy(checkpoint / KIT_DIR / EMBEDDINGS_FILE)
                sources[name] = dequantize_rows(packed["q"], packed["scale"])
            elif name in tensors:
                sources[name] = tensors[name].astype(np.float32)
            else:
                raise ArtifactError(
                    f"{checkpoint / 'model.safetensors'} has no tensor {name!r} that "
                    f"{KIT_DIR}/{KIT_FILE} needs: the kit was made from another checkpoint"
                )
        array = sources[name].T if entry["transpose"] else sources[name]
        if list(array.shape) != list(entry["shape"]):
            raise ArtifactError(f"{name} has shape {list(array.shape)}, {KIT_FILE} expects {entry['shape']}")
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        out[entry["offset"] : entry["offset"] + len(data)] = data
    return bytes(out)


def assemble(checkpoint: Path, out: Path) -> Path:
    """Write the artifact directory ``out`` from the kit of ``checkpoint`` (torch-free).

    Raises ArtifactError when the checkpoint has no kit, the kit was made from another checkpoint
    (its manifest sha256 differs) or the assembled weights do not match the recorded sha256.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    kit = kit_of(checkpoint)
    if kit is None:
        raise ArtifactError(
            f"{checkpoint} ships no ONNX kit ({KIT_DIR}/{KIT_FILE}); make one with "
            "'reranker ship-onnx' or export with the train extra installed"
        )
    made_from = sha256_file(checkpoint / MANIFEST)
    if kit["checkpoint_manifest_sha256"] != made_from:
        raise ArtifactError(
            f"{checkpoint / KIT_DIR} was made from another checkpoint than {checkpoint} "
            "(manifest sha256 differs); rerun 'reranker ship-onnx'"
        )
    data = weights_bytes(checkpoint, kit)
    digest = hashlib.sha256(data).hexdigest()
    if digest != kit["weights_sha256"]:
        raise ArtifactError(
            f"the assembled {WEIGHTS_BIN} has sha256 {digest[:12]}..., {KIT_FILE} expects "
            f"{kit['weights_sha256'][:12]}...: a file of {checkpoint} was changed"
        )
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / WEIGHTS_BIN).write_bytes(data)
    graphs = [f"{g}.onnx" for g in kit["graphs"]]
    for name in graphs:
        shutil.copy(checkpoint / KIT_DIR / name, tmp / name)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(checkpoint / name, tmp / name)
    info = {
        **kit["manifest"],
        "assembled_from": {"checkpoint": str(checkpoint), "kit_sha256": sha256_file(checkpoint / KIT_DIR / KIT_FILE)},
    }
    write_manifest(tmp, ARTIFACT_KIND, info, [*graphs, WEIGHTS_BIN, "config.json", "tokenizer.json"])
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


__all__ = [
    "EMBEDDINGS_FILE",
    "EMBEDDINGS_SOURCE",
    "KIT_DIR",
    "KIT_FILE",
    "WEIGHTS_BIN",
    "assemble",
    "dequantize_rows",
    "kit_of",
    "weights_bytes",
]
