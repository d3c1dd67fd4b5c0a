"""Make a checkpoint's serving kit (``reranker ship-onnx``): its fp32 ONNX graphs with the weights
moved out to external data that :func:`reranker.kit.assemble` rebuilds from the checkpoint's own
``model.safetensors`` without torch (see :mod:`reranker.kit` for the format).

Each large initializer of the exported graphs is matched, bit for bit, to a checkpoint tensor (cast
to float32) or its transpose; the word-embedding matrix, which the checkpoint reads from its base
model's package, is shipped int8 with one float32 scale per row. The kit is verified before it is
written: assembled torch-free, then scored by ONNX Runtime against PyTorch on the export's sample
texts (tolerance: fp16's, since the int8 embeddings are an approximation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ArtifactError
from reranker.kit import EMBEDDINGS_FILE, EMBEDDINGS_SOURCE, KIT_DIR, KIT_FILE, WEIGHTS_BIN, assemble, dequantize_rows
from reranker.manifest import MANIFEST, sha256_file
from reranker.models.checkpoint import load_checkpoint, resolve_model_dir

log = logging.getLogger(__name__)

MIN_EXTERNAL = 1024
"""Initializers with fewer elements stay inside the graph."""
ALIGN = 4096
"""Offsets in weights.bin are page-aligned (ONNX Runtime may then map them)."""


def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``q = round(x / s)``, ``s = max |row| / 127`` (1 for an all-zero row).

    >>> q, s = quantize_rows(np.array([[1.0, -0.5], [0.0, 0.0]], np.float32))
    >>> q.tolist(), [round(float(v), 6) for v in s]
    ([[127, -64], [0, 0]], [0.007874, 1.0])
    """
    scale = np.abs(matrix).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8), scale


def _digest(array: np.ndarray) -> tuple[tuple[int, ...], str]:
    return array.shape, hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def ship_onnx(model_dir: str | Path, *, opset: int = 17) -> dict[str, Any]:
    """Write ``MODEL/onnx/`` (graphs, kit.json, int8 word embeddings) for the checkpoint ``model_dir``;
    returns kit.json. Raises ArtifactError when the assembled kit disagrees with PyTorch."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    from reranker_export.onnx_export import TOLERANCE, Parity, export_model, verify_parity

    model_dir = resolve_model_dir(model_dir)
    loaded = load_checkpoint(model_dir)
    state = {n: t.detach().float().numpy() for n, t in loaded.model.state_dict().items()}
    manifest = json.loads((model_dir / MANIFEST).read_text())
    from_base = set(manifest.get("base_tensors", {}).get("tensors", {}))
    candidates: dict[tuple[tuple[int, ...], str], tuple[str, bool]] = {}
    for name, array in state.items():
        if array.size < MIN_EXTERNAL or array.ndim > 2:
            continue
        source = EMBEDDINGS_SOURCE if name in from_base else name
        candidates.setdefault(_digest(array), (source, False))
        if array.ndim == 2:
            candidates.setdefault(_digest(array.T), (source, True))
    out = model_dir / KIT_DIR
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exported = export_model(model_dir, tmp / "full", precision="fp32", opset=opset)
        kit_dir = tmp / KIT_DIR
        kit_dir.mkdir()
        layout: dict[tuple[str, bool], dict[str, Any]] = {}
        size = 0
        models = {g: onnx.load(str(tmp / "full" / f"{g}.onnx")) for g in exported["graphs"]}
        kept: dict[str, int] = {}
        for graph, model in models.items():
            for init in model.graph.initializer:
                array = numpy_helper.to_array(init)
                if array.size < MIN_EXTERNAL or array.dtype != np.float32:
                    continue
                found = candidates.get(_digest(array))
                if found is None:
                    kept[f"{graph}:{init.name}"] = array.nbytes
                    continue
                if found not in layout:
                    layout[found] = {
                        "source": found[0],
                        "transpose": found[1],
                        "shape": list(array.shape),
                        "offset": size,
                        "bytes": array.nbytes,
                    }
                    size = -(-(size + array.nbytes) // ALIGN) * ALIGN
                entry = layout[found]
                if not init.HasField("raw_data"):
                    init.raw_data = array.astype("<f4").tobytes()
                set_external_data(init, WEIGHTS_BIN, offset=entry["offset"], length=entry["bytes"])
                init.ClearField("raw_data")
                init.ClearField("float_data")
                init.data_location = onnx.TensorProto.EXTERNAL
        if kept:
            log.info("initializers kept inside the graphs (no checkpoint tensor equals them): %s", kept)
        embedding = [n for n in state if n in from_base]
        if embedding:
            q, scale = quantize_rows(state[embedding[0]])
            from safetensors.numpy import save_file

            save_file({"q": q, "scale": scale}, str(kit_dir / EMBEDDINGS_FILE))
            state[embedding[0]] = dequantize_rows(q, scale)  # what serving will hold, for the digest below
        kit: dict[str, Any] = {
            "graphs": list(exported["graphs"]),
            "tensors": sorted(layout.values(), key=lambda e: e["offset"]),
            "weights_bytes": size,
            "checkpoint_manifest_sha256": sha256_file(model_dir / MANIFEST),
            "word_embeddings": "int8, one float32 scale per row" if embedding else "in model.safetensors",
            "kept_in_graphs_bytes": sum(kept.values()),
        }
        kit["manifest"] = {k: v for k, v in exported.items() if k not in ("kind", "files", "provenance", "parity")}
        kit["manifest"]["checkpoint"]["path"] = model_dir.name  # where it was made is not part of the kit
        # the graphs carry the weights' digest, so that a graph's sha256 (the artifact identity that
        # passage stores bind to) changes with the weights even though the weights live outside it
        kit["weights_sha256"] = _weights_digest(kit, state, embedding[0] if embedding else None)
        for graph, model in models.items():
            onnx.helper.set_model_props(model, {"reranker_weights_sha256": kit["weights_sha256"]})
            (kit_dir / f"{graph}.onnx").write_bytes(model.SerializeToString())
        for name in ("config.json", "tokenizer.json", MANIFEST, "model.safetensors"):
            shutil.copy(model_dir / name, tmp / name)
        (kit_dir / KIT_FILE).write_text(json.dumps(kit, indent=2) + "\n")
        artifact = assemble(tmp, tmp / "assembled")
        parity = verify_parity(loaded, artifact, "fp32")
        Parity(parity.figures, parity.score_scale, "fp16").check()
        kit["manifest"]["parity"] = {
            **parity.figures,
            "max_abs_score": parity.score_scale,
            "tolerance": TOLERANCE["fp16"],
            "against": "torch checkpoint (fp32 embeddings)",
        }
        (kit_dir / KIT_FILE).write_text(json.dumps(kit, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(kit_dir, out)
        for path in out.iterdir():
            path.chmod(0o644)  # package data: readable by all (temporary files are private)
    return kit


def _weights_digest(kit: dict[str, Any], state: dict[str, np.ndarray], embedding: str | None) -> str:
    """sha256 of the weights.bin that :func:`reranker.kit.weights_bytes` will write."""
    data = bytearray(int(kit["weights_bytes"]))
    for entry in kit["tensors"]:
        name = embedding if entry["source"] == EMBEDDINGS_SOURCE else entry["source"]
        if name is None:
            raise ArtifactError("the kit names the word embeddings but the checkpoint has none from a base model")
        array = state[name].T if entry["transpose"] else state[name]
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        data[entry["offset"] : entry["offset"] + len(raw)] = raw
    return hashlib.sha256(bytes(data)).hexdigest()


__all__ = ["quantize_rows", "ship_onnx"]
