"""Shared fixtures: a tiny random BERT in Hugging Face layout, built from the fixture texts."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
DL19_MINI = FIXTURES / "dl19-mini"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _fixture_words(limit: int = 1500) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    for name in ("queries.tsv", "passages.tsv"):
        path = DL19_MINI / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                text = line.split("\t", 1)[-1].lower()
                counts.update(re.findall(r"\w+|[^\w\s]", text))
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = letters + ["##" + c for c in letters]
    return pieces + [w for w, _ in counts.most_common(limit) if w not in pieces]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, 32-wide BERT directory (config.json, vocab.txt, model.safetensors)."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from reranker.config import EncoderConfig
    from reranker.models.bert import BertEncoder

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = SPECIALS + _fixture_words()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    hf = {
        "model_type": "bert",
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
    }
    (directory / "config.json").write_text(json.dumps(hf))
    torch.manual_seed(0)
    encoder = BertEncoder(EncoderConfig.from_hf(hf))
    state = {"bert." + k: v.contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    return directory


@pytest.fixture(scope="session")
def tiny_exports(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """arch -> (checkpoint dir, fp32 ONNX artifact dir) of tiny random models (short lengths)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reranker.config import ARCHES
    from reranker.models.checkpoint import init_from_base, save_checkpoint
    from reranker_export.onnx_export import export_model

    root = tmp_path_factory.mktemp("export")
    out = {}
    for arch in ARCHES:
        torch.manual_seed(0)
        loaded = init_from_base(arch, tiny_base, query_max_len=12, passage_max_len=40)
        save_checkpoint(root / f"ckpt-{arch}", loaded, {"steps": 0})
        export_model(root / f"ckpt-{arch}", root / f"onnx-{arch}")
        out[arch] = (root / f"ckpt-{arch}", root / f"onnx-{arch}")
    return out


def copy_with_config(src: Path, dst: Path, kind: str, **changes: object) -> Path:
    """A copy of the model or artifact directory ``src`` with ``changes`` set in its config.json and
    its manifest (of ``kind``) re-written, so that it verifies."""
    import json
    import shutil

    from reranker.manifest import read_manifest, write_manifest

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **changes}))
    manifest = read_manifest(dst, kind)
    info = {k: v for k, v in manifest.items() if k not in ("kind", "files", "provenance")}
    write_manifest(dst, kind, info, list(manifest["files"]))
    return dst
