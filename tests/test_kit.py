"""The serving kit (reranker/kit.py, reranker_export/kit.py): weightless graphs shipped with a checkpoint,
assembled without torch into an artifact whose scores match the torch model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reranker.artifact import Artifact
from reranker.config import DEFAULT_MODEL_DIR
from reranker.errors import ArtifactError
from reranker.kit import KIT_DIR, KIT_FILE, WEIGHTS_BIN, assemble, kit_of

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped(tiny_base, tmp_path_factory) -> Path:
    """A tiny ColBERT checkpoint saved like the default (fp16, word embeddings from its base) with a kit."""
    from reranker.models.checkpoint import init_from_base, save_checkpoint
    from reranker_export.kit import ship_onnx

    root = tmp_path_factory.mktemp("kit")
    torch.manual_seed(0)
    loaded = init_from_base("colbert", tiny_base, query_max_len=48, passage_max_len=64)
    ckpt = save_checkpoint(root / "ckpt", loaded, {"steps": 0}, base=str(tiny_base), fp16=True)
    ship_onnx(ckpt)
    return ckpt


def _torch_and_onnx_scores(ckpt: Path, artifact_dir: Path, queries: list[str], passages: list[str]):
    from reranker.engine import LocalEngine, RuntimeConfig
    from reranker.models import Tokens
    from reranker.models.checkpoint import load_checkpoint
    from reranker.tokenization import Preprocessor

    loaded = load_checkpoint(ckpt)
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    expected, got = [], []
    engine = LocalEngine.of(str(artifact_dir), runtime=RuntimeConfig(provider="cpu", intra_op_threads=1))
    try:
        for query in queries:
            q, p = prep.queries([query] * len(passages)), prep.passages(passages)
            with torch.no_grad():
                expected.append(
                    loaded.model.score(
                        Tokens(torch.from_numpy(q.input_ids), torch.from_numpy(q.attention_mask)),
                        Tokens(torch.from_numpy(p.input_ids), torch.from_numpy(p.attention_mask)),
                    ).numpy()
                )
            got.append(np.array(engine.scores(query, [f"p{i}" for i in range(len(passages))], passages, aggregate="first")[0]))
    finally:
        engine.close()
    return np.concatenate(expected), np.concatenate(got)


def test_kit_is_small_and_assembles_to_a_verified_artifact(shipped, tmp_path) -> None:
    kit = kit_of(shipped)
    assert kit is not None and kit["graphs"] == ["query_encoder", "passage_encoder", "scorer"]
    graphs = sum((shipped / KIT_DIR / f"{g}.onnx").stat().st_size for g in kit["graphs"])
    assert graphs < kit["weights_bytes"] / 2  # the weights are outside the graphs
    assert {e["source"] for e in kit["tensors"]} >= {"@word_embeddings"}
    assert any(e["transpose"] for e in kit["tensors"])  # Linear weights are stored transposed for MatMul
    art = Artifact.open(assemble(shipped, tmp_path / "art"))
    assert WEIGHTS_BIN in art.manifest["files"] and art.manifest["checkpoint"]["manifest_sha256"]
    assert art.manifest["parity"]["scores_max_abs_diff"] <= 0.03 * (1 + art.manifest["parity"]["max_abs_score"])


def test_assembled_scores_match_the_torch_model(shipped, tmp_path) -> None:
    """Parity: the torch-free artifact against the torch checkpoint (int8 word embeddings vs fp32)."""
    from reranker_export.onnx_export import SAMPLE_PASSAGES, SAMPLE_QUERIES

    art = assemble(shipped, tmp_path / "art")
    short = [q for q in SAMPLE_QUERIES if len(q.split()) <= 7]
    expected, got = _torch_and_onnx_scores(shipped, art, short, SAMPLE_PASSAGES)
    assert np.max(np.abs(expected - got)) <= 0.03 * (1 + np.max(np.abs(expected)))
    assert np.corrcoef(expected, got)[0, 1] > 0.999


def test_assembly_needs_no_torch(shipped, tmp_path) -> None:
    """Run assemble with torch, transformers and onnx made unimportable."""
    code = (
        "import sys\nfor m in ('torch', 'transformers', 'onnx'): sys.modules[m] = None\n"
        "from reranker.kit import assemble\nfrom reranker.artifact import Artifact\n"
        f"Artifact.open(assemble({str(shipped)!r}, {str(tmp_path / 'art')!r}))\n"
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\nprint('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_changed_files_are_refused(shipped, tmp_path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(shipped, copy)
    kit = json.loads((copy / KIT_DIR / KIT_FILE).read_text())
    kit["weights_sha256"] = "0" * 64
    (copy / KIT_DIR / KIT_FILE).write_text(json.dumps(kit))
    with pytest.raises(ArtifactError, match=r"a file of .* was changed"):
        assemble(copy, tmp_path / "a")
    (copy / "manifest.json").write_text((copy / "manifest.json").read_text().replace('"steps": 0', '"steps": 1'))
    with pytest.raises(ArtifactError, match="made from another checkpoint"):
        assemble(copy, tmp_path / "b")
    shutil.rmtree(copy / KIT_DIR)
    with pytest.raises(ArtifactError, match="ships no ONNX kit"):
        assemble(copy, tmp_path / "c")


def test_the_shipped_default_has_a_kit_made_from_it() -> None:
    kit = kit_of(DEFAULT_MODEL_DIR)
    assert kit is not None, "reranker/default_model/onnx is missing: run 'reranker ship-onnx --model reranker/default_model'"
    from reranker.manifest import sha256_file

    assert kit["checkpoint_manifest_sha256"] == sha256_file(DEFAULT_MODEL_DIR / "manifest.json")


@pytest.mark.slow
def test_shipped_default_matches_torch_on_dl19(tmp_path) -> None:
    """Parity of the shipped default's kit with the torch default on real queries and BM25 candidates."""
    from reranker.data import DataFolder

    from .conftest import DL19_MINI

    folder = DataFolder.open(DL19_MINI)
    art = assemble(DEFAULT_MODEL_DIR, tmp_path / "art")
    expected, got = [], []
    for qid in sorted(folder.queries)[:2]:
        pids = [p for p, _ in folder.run("bm25")[qid][:12]]
        e, g = _torch_and_onnx_scores(DEFAULT_MODEL_DIR, art, [folder.queries[qid]], [folder.passages[p] for p in pids])
        expected.append(e)
        got.append(g)
        assert list(np.argsort(-e)[:3]) == list(np.argsort(-g)[:3])  # the same top 3
    e, g = np.concatenate(expected), np.concatenate(got)
    assert np.max(np.abs(e - g)) <= 0.03 * (1 + np.max(np.abs(e)))


def test_serve_provisions_from_the_kit_without_exporting(shipped, tmp_path, monkeypatch) -> None:
    from reranker import provision
    from reranker.store import PassageStore

    from .conftest import DL19_MINI

    def no_export(args: list[str]) -> None:
        raise AssertionError(f"provisioning ran a torch subprocess: {args}")

    monkeypatch.setenv("RERANKER_HOME", str(tmp_path))
    monkeypatch.setattr(provision, "_run", no_export)
    monkeypatch.setattr(provision, "DEFAULT_MODEL_DIR", shipped)
    artifact_dir, store_dir = provision.ensure_default(DL19_MINI)
    artifact = Artifact.open(artifact_dir)
    assert WEIGHTS_BIN in artifact.manifest["files"] and PassageStore.open(store_dir, artifact)
    assert provision.ensure_default(DL19_MINI) == (artifact_dir, store_dir)  # cached: nothing rebuilt
