"""The store path of split models at speed: fp16 states padded as they are stored and cast by ONNX
Runtime, one gather per batch, ONNX Runtime threads that do not spin (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from reranker.arch import spec
from reranker.artifact import Artifact
from reranker.config import ARCHES
from reranker.engine.loader import open_scorer
from reranker.engine.prepare import pad_rows
from reranker.runtime import RuntimeConfig
from reranker.runtime.scorer import CAST_FP16_TO_FP32
from reranker.runtime.sessions import Graph

SPLIT = [a for a in ARCHES if spec(a).split]


def test_cast_graph_is_what_onnx_helper_builds() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", "length", "dim"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length", "dim"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    assert model.SerializeToString() == CAST_FP16_TO_FP32
    x = np.array([[[0.0, -0.0, 1e-7, -3e-5], [65504.0, -1.5, 0.33325, np.inf]]], dtype=np.float16)
    y = Graph(CAST_FP16_TO_FP32, RuntimeConfig(provider="cpu")).run({"x": x})[0]
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))


@pytest.mark.parametrize("arch", SPLIT)
def test_fp16_states_score_exactly_as_their_fp32_cast(tiny_exports, arch: str) -> None:
    scorer = open_scorer(Artifact.open(tiny_exports[arch][1]), RuntimeConfig(provider="cpu"))
    rng = np.random.default_rng(0)
    inputs = {i.name: i.shape for i in scorer.graphs["scorer"].session.get_inputs()}
    dim, pooled = inputs["p_vectors"][-1], "q_mask" not in inputs  # BERT-dot: one vector each
    q = rng.standard_normal((3, 1 if pooled else 5, dim)).astype(np.float16)
    p = rng.standard_normal((3, 1 if pooled else 7, dim)).astype(np.float16)
    q_mask, p_mask = np.ones(q.shape[:2], np.int64), np.ones(p.shape[:2], np.int64)
    p_mask[1, 4:] = 0
    np.testing.assert_array_equal(
        scorer.score(q, q_mask, p, p_mask), scorer.score(q.astype(np.float32), q_mask, p.astype(np.float32), p_mask)
    )


def test_pad_rows_keeps_fp16_only_when_every_row_is_fp16() -> None:
    a, b = np.ones((2, 3), np.float16), np.full((1, 3), 2, np.float32)
    out, mask = pad_rows([a, a[:1]], 0.0)
    assert out.dtype == np.float16 and mask.tolist() == [[1, 1], [1, 0]] and out[1, 1].tolist() == [0, 0, 0]
    out, mask = pad_rows([a, b], 0.0)
    assert out.dtype == np.float32 and out[1, 0].tolist() == [2, 2, 2] and mask.tolist() == [[1, 1], [1, 0]]
    same, mask = pad_rows([b, b, b], 0.0)
    assert same.shape == (3, 1, 3) and mask.tolist() == [[1]] * 3 and same.flags.c_contiguous


@pytest.mark.parametrize("spin", [False, True])
def test_intra_op_spinning_follows_the_runtime_config(tiny_exports, spin: bool) -> None:
    scorer = open_scorer(Artifact.open(tiny_exports["colbert"][1]), RuntimeConfig(provider="cpu", allow_spinning=spin))
    options = scorer.graphs["scorer"].session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")
