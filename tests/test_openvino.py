"""The openvino backend and static int8 (NNCF, QDQ) artifacts: parity with ONNX Runtime, thread safety,
refused settings (tiny random models)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from reranker.config import ARCHES
from reranker.data import DataFolder
from reranker.engine import BatcherConfig, LocalEngine, ModelSpec, RuntimeConfig
from reranker.errors import ConfigError
from reranker.runtime.openvino_graph import OpenVinoGraph
from reranker_export.onnx_export import export_model
from reranker_export.quantize import calibration_pairs

from .conftest import DL19_MINI

ORT = RuntimeConfig(provider="cpu")
OV_F32 = RuntimeConfig(provider="cpu", backend="openvino", inference_precision="f32")
BUDGET = BatcherConfig(max_batch_size=4, max_batch_cost=200, max_wait_s=0.0)


def scores(art: Path, runtime: RuntimeConfig, n: int = 9) -> np.ndarray:
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    pids = [p for p, _ in folder.run("bm25")[qid][:n]]
    with LocalEngine.of(str(art), runtime=runtime, batching=BUDGET, warmup=False) as engine:
        got, _ = engine.scores(folder.queries[qid], pids, [folder.passages[p] for p in pids])
    return np.array(got, dtype=np.float32)


@pytest.mark.parametrize("arch", ARCHES)
def test_openvino_scores_equal_onnx_runtime(tiny_exports, arch: str) -> None:
    """Every graph of every architecture on OpenVINO (f32) scores as ONNX Runtime does."""
    art = tiny_exports[arch][1]
    ours = scores(art, ORT)
    theirs = scores(art, OV_F32)
    np.testing.assert_allclose(theirs, ours, atol=2e-4, rtol=1e-4)


def test_openvino_graph_is_safe_from_several_threads(tiny_exports) -> None:
    graph = OpenVinoGraph(tiny_exports["colbert"][1] / "passage_encoder.onnx", OV_F32)
    assert graph.provider.startswith("OpenVINO") and graph.input_types == {"ids": "tensor(int64)", "mask": "tensor(int64)"}
    rng = np.random.default_rng(0)
    feeds = [{"ids": rng.integers(5, 100, (2, 3 + i)), "mask": np.ones((2, 3 + i), np.int64)} for i in range(6)]
    alone = [graph.run(f)[0] for f in feeds]
    together: list = [None] * len(feeds)

    def work(i: int) -> None:
        for _ in range(20):
            together[i] = graph.run(feeds[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_refused_runtime_settings() -> None:
    with pytest.raises(ConfigError, match="runs on the CPU"):
        RuntimeConfig(provider="cuda", backend="openvino")
    with pytest.raises(ConfigError, match="OpenVINO setting"):
        RuntimeConfig(inference_precision="bf16")
    with pytest.raises(ConfigError, match="backend must be one of onnxruntime, openvino"):
        RuntimeConfig(backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend must be one of"):
        ModelSpec(name="m", artifact="a", backend="tvm")  # type: ignore[arg-type]


def test_missing_openvino_says_what_to_install(tiny_exports, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'reranker\[openvino\]'"):
        OpenVinoGraph(tiny_exports["bert_cat"][1] / "cross_encoder.onnx", OV_F32)


@pytest.mark.parametrize("arch", ["bert_cat", "colbert"])
def test_int8_static_export_runs_on_both_backends(tiny_exports, tmp_path: Path, arch: str) -> None:
    ckpt, fp32 = tiny_exports[arch]
    pairs = calibration_pairs(DL19_MINI, 40, per_query=20)
    manifest = export_model(ckpt, tmp_path / "q", precision="int8-static", calibration=pairs)
    assert manifest["precision"] == "int8-static"
    assert manifest["quantization"]["library"] == "nncf" and manifest["quantization"]["pairs"] == 40
    import onnx

    graph = "cross_encoder" if arch == "bert_cat" else "passage_encoder"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / f"{graph}.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic MatMulInteger
    reference = scores(fp32, ORT)
    for runtime in (ORT, RuntimeConfig(provider="cpu", backend="openvino")):
        got = scores(tmp_path / "q", runtime)
        assert np.isfinite(got).all()
        spread = float(reference.max() - reference.min())
        assert float(np.abs(got - reference).max()) < 0.25 * spread + 0.05, (got, reference)
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["quantization"]["recipe"].startswith("post-training")


def test_int8_static_needs_calibration_pairs(tiny_exports, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        export_model(tiny_exports["bert_cat"][0], tmp_path / "q", precision="int8-static")
    with pytest.raises(ConfigError, match="calibration pairs"):
        calibration_pairs(DL19_MINI, 10_000, per_query=0)


def test_one_model_on_openvino_beside_onnx_runtime(tiny_exports, tmp_path: Path) -> None:
    """A server config puts one model on OpenVINO and leaves the other on [runtime]'s backend."""
    from reranker.engine import Engine
    from reranker.server.config import load_config

    config = tmp_path / "server.toml"
    config.write_text(
        f'[runtime]\nprovider = "cpu"\n[[models]]\nname = "teacher"\nartifact = "{tiny_exports["bert_cat"][1]}"\n'
        f'backend = "openvino"\n[[models]]\nname = "student"\nartifact = "{tiny_exports["colbert"][1]}"\n'
    )
    cfg = load_config(config)
    assert [m.backend for m in cfg.models] == ["openvino", ""]
    engine = Engine.from_config(cfg.engine)
    providers = {name: m.description.provider for name, m in engine.models.items()}
    asyncio.run(engine.close())
    assert providers["teacher"].startswith("OpenVINO") and providers["student"] == "CPUExecutionProvider"
    config.write_text(config.read_text().replace('backend = "openvino"', 'backend = "tensorrt"'))
    with pytest.raises(ConfigError, match="backend must be one of"):
        load_config(config)
