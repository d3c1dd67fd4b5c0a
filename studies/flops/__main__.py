"""Physical sense check: the teacher's achieved FLOP/s as a fraction of this machine's matmul peak.

    .venv/bin/python -m studies.flops --artifact runs/bench-latency/*/onnx-bert_cat-fp32 \\
        --json studies/flops/results/2026-11-27-cpu.json

* Peak: ONNX Runtime running one large fp32 MatMul (the same kernels the models use).
* Teacher work: exact FLOPs of every (query, passage) pair of the DL19 BM25 top-100 at its real
  packed length (projections 8LH^2, feed-forward 4LHF, attention 4L^2H per layer).
* Achieved: those FLOPs over the in-process time of scoring the same pairs with the artifact.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from benchmarks._common import DL19, local_engine, write_json
from reranker.artifact import Artifact
from reranker.data import DataFolder
from reranker.engine import RuntimeConfig
from reranker.tokenization import Preprocessor


def matmul_peak(n: int, repeats: int, threads: int) -> float:
    """GFLOP/s of an n x n x n fp32 MatMul on ONNX Runtime's CPU provider (best of ``repeats``)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    session.run(None, {"a": a, "b": b})
    best = min(_timed(lambda: session.run(None, {"a": a, "b": b})) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pair_flops(length: int, hidden: int, inner: int, layers: int) -> float:
    per_layer = 8 * length * hidden**2 + 4 * length * hidden * inner + 4 * length**2 * hidden
    return layers * per_layer + 2 * hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, type=Path, help="a bert_cat ONNX artifact (fp32)")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--ort-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    artifact = Artifact.open(args.artifact)
    if artifact.spec.split:
        raise SystemExit(f"{args.artifact} is a {artifact.arch} artifact; the check is for the cross-encoder teacher")
    cfg, enc = artifact.config, artifact.config.encoder
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    qids = sorted(run)[: args.queries]
    prep = Preprocessor(artifact.tokenizer, cfg)
    total_flops, pairs = 0.0, 0
    for q in qids:
        texts = [folder.passages[p] for p, _ in run[q]]
        q_len = int(prep.queries([folder.queries[q]]).attention_mask.sum())
        p_lens = prep.passages(texts).attention_mask.sum(1) - 1  # the passage [CLS] is dropped when packing
        total_flops += sum(pair_flops(q_len + int(n), enc.hidden_size, enc.intermediate_size, enc.num_layers) for n in p_lens)
        pairs += len(texts)
    seconds = 0.0
    with local_engine(args.artifact, runtime=RuntimeConfig(provider="cpu", intra_op_threads=args.ort_threads)) as engine:
        for q in qids:
            ids = [p for p, _ in run[q]]
            t = time.perf_counter()
            engine.rerank(folder.queries[q], ids, [folder.passages[p] for p in ids])
            seconds += time.perf_counter() - t
    achieved = total_flops / seconds / 1e9
    peak = max(matmul_peak(n, 5, args.ort_threads) for n in (1024, 2048))
    result = {
        "artifact": str(args.artifact),
        "precision": artifact.precision,
        "queries": len(qids),
        "pairs": pairs,
        "gflop_per_pair": round(total_flops / pairs / 1e9, 3),
        "seconds": round(seconds, 2),
        "pairs_per_s": round(pairs / seconds, 1),
        "achieved_gflops": round(achieved, 1),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3),
    }
    print(json.dumps(result, indent=2))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
