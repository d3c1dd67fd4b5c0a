"""The BERT-cat teacher's precision options side by side: effectiveness and speed from one run.

    .venv/bin/python -m studies.teacher_quantization --teacher runs/bert_cat \\
        --json studies/teacher_quantization/results/2026-11-30-cpu.json

Each option is an artifact precision (``reranker export --precision``, optionally with MatMuls left
unquantised) on a runtime backend. Quality: nDCG@10 on TREC DL 2019 (BM25 top-100, all 43 queries)
and its change against fp32 on ONNX Runtime, the largest score difference from it, and the mean
Spearman correlation with it on MS MARCO dev queries (the figure an option is chosen by: DL19 is
only reported). Speed: pairs/s in process (the engine's request path, one request at a time, 5 DL19
queries x 100 candidates), options interleaved over --rounds rounds, median. Calibration pairs of
int8-static: MS MARCO dev queries 0-99 (top 3 each); the dev fidelity queries are 300-339.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks._common import DL19, ROOT, write_json
from benchmarks.latency_report import machine
from reranker.data import DataFolder
from reranker.engine import LocalEngine, RuntimeConfig
from reranker.eval.irm import evaluate_with_ir_measures
from reranker.machine import FFN_OUTPUTS

DEV = ROOT / "data/msmarco-passage/msmarco-dev-small-600"


@dataclass(frozen=True)
class Option:
    name: str
    precision: str
    backend: str = "onnxruntime"
    inference_precision: str = "auto"
    exclude: str | None = None

    @property
    def artifact(self) -> str:
        return self.precision + ("-ffn-out-float" if self.exclude else "")


OPTIONS = (
    Option("fp32, ONNX Runtime", "fp32"),
    Option("fp32, OpenVINO f32", "fp32", "openvino", "f32"),
    Option("bf16, OpenVINO (fp32 artifact)", "fp32", "openvino", "bf16"),
    Option("int8 dynamic per-channel, ONNX Runtime", "int8"),
    Option("int8 dynamic, FFN outputs fp32, ONNX Runtime", "int8", exclude=FFN_OUTPUTS),
    Option("int8 static (NNCF), ONNX Runtime", "int8-static"),
    Option("int8 static (NNCF), OpenVINO", "int8-static", "openvino"),
    Option("int8 static, FFN outputs bf16, OpenVINO", "int8-static", "openvino", exclude=FFN_OUTPUTS),
)


def rankings(engine: LocalEngine, folder: DataFolder, cands: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {
        q: np.array(engine.scores(folder.queries[q], ids, [folder.passages[p] for p in ids])[0], np.float32)
        for q, ids in cands.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="BERT-cat checkpoint")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--options", default="", help="';'-separated option names (default: all)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-quantization")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from scipy.stats import spearmanr

    from reranker_export.onnx_export import export_model
    from reranker_export.quantize import calibration_pairs

    chosen = [o for o in OPTIONS if not args.options or o.name in args.options.split(";")]
    dev = DataFolder.open(DEV)
    dev_run = dev.run("bm25")
    dev_q = sorted(dev_run)
    calibration = calibration_pairs(DEV, 300, run="bm25")  # dev queries 0-99, top 3 each
    for o in chosen:
        art = args.work / o.artifact
        if not (art / "manifest.json").is_file():
            export_model(
                args.teacher,
                art,
                precision=o.precision,
                int8_exclude=o.exclude,
                calibration=calibration if o.precision == "int8-static" else (),
            )
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    dl19 = {q: [p for p, _ in run[q][:100]] for q in sorted(run)}
    fidelity = {q: [p for p, _ in dev_run[q][:50]] for q in dev_q[300:340]}
    engines = {
        o.name: LocalEngine.of(
            str(args.work / o.artifact),
            runtime=RuntimeConfig(provider="cpu", backend=o.backend, inference_precision=o.inference_precision),
            cache_mb=0,  # the same requests every round: time the model, not the score cache
        )
        for o in chosen
    }  # type: ignore[arg-type]
    timed = dict(list(dl19.items())[:5])
    speed: dict[str, list[float]] = {o.name: [] for o in chosen}
    for r in range(args.rounds + 1):  # round 0 warms up
        for o in chosen if r % 2 else chosen[::-1]:
            started = time.perf_counter()
            rankings(engines[o.name], folder, timed if r else dict(list(timed.items())[:1]))
            if r:
                speed[o.name].append(sum(map(len, timed.values())) / (time.perf_counter() - started))
    rows = {}
    reference: dict[str, dict[str, np.ndarray]] = {}
    for o in chosen:
        scores = {"dl19": rankings(engines[o.name], folder, dl19), "dev": rankings(engines[o.name], dev, fidelity)}
        reference = reference or scores
        ranked = {q: sorted(zip(dl19[q], s.tolist(), strict=True), key=lambda x: -x[1]) for q, s in scores["dl19"].items()}
        rows[o.name] = {
            "artifact": o.artifact,
            "backend": o.backend,
            "inference_precision": o.inference_precision,
            "excluded": o.exclude,
            "pairs_per_s": round(statistics.median(speed[o.name]), 1),
            "rounds": [round(x, 1) for x in speed[o.name]],
            "ndcg@10": round(evaluate_with_ir_measures(folder.qrels, ranked, 2)["ndcg@10"], 4),
            "max_abs_diff": float(max(np.abs(s - reference["dl19"][q]).max() for q, s in scores["dl19"].items())),
            "dev_spearman": round(float(np.mean([spearmanr(s, reference["dev"][q])[0] for q, s in scores["dev"].items()])), 4),
        }
        engines[o.name].close()
    base, reference_speed = rows[chosen[0].name]["ndcg@10"], rows[chosen[0].name]["pairs_per_s"]
    print(
        f"\nBERT-cat teacher {args.teacher}: DL19 BM25 top-100 (43 queries)\n"
        "| option | pairs/s | x fp32 ORT | nDCG@10 | change | max score diff | dev Spearman |\n|---|---|---|---|---|---|---|"
    )
    for name, r in rows.items():
        r["ndcg@10_change"] = round(r["ndcg@10"] - base, 4)
        r["speedup"] = round(r["pairs_per_s"] / reference_speed, 2)
        print(
            f"| {name} | {r['pairs_per_s']} | {r['speedup']}x | {r['ndcg@10']:.4f} | {r['ndcg@10_change']:+.4f} | "
            f"{r['max_abs_diff']:.3f} | {r['dev_spearman']:.4f} |"
        )
    write_json(
        args.json,
        {
            "command": "python -m studies.teacher_quantization "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")),
            "machine": machine([]),
            "teacher": str(args.teacher),
            "options": rows,
        },
    )


if __name__ == "__main__":
    main()
