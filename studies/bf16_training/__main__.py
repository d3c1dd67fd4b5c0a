"""bf16 against fp32 training on the CPU: the same run (model, triples, seed, steps) in both precisions,
alternating short legs so that both see the same machine load; loss curves and step-time ratio.

    .venv/bin/python -m studies.bf16_training --triples runs/teacher-scores-colbert.tsv \\
        --out studies/bf16_training/results/DATE-cpu

Writes OUT.json (per-step losses, seconds per step, the ratio) and OUT.png (both loss curves).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import dated

T = "data/msmarco-passage"
DATA = ["--data", f"{T}/msmarco-dev-small-600", "--data", f"{T}/trec-dl-2023-llmjudge", "--data", "runs/train20k"]


def _train(out: Path, precision: str, args: argparse.Namespace, stop_at: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "reranker.cli",
        "train",
        "--arch",
        args.arch,
        "--init",
        "minilm",
        *DATA,
        "--triples",
        str(args.triples),
        "--loss",
        args.loss,
        "--steps",
        str(args.steps),
        "--stop-at",
        str(stop_at),
        "--lr",
        "2e-5",
        "--warmup-steps",
        "10",
        "--batch-size",
        "16",
        "--seed",
        "7",
        "--precision",
        precision,
        "--validate-every",
        "0",
        "--val-max-queries",
        "0",
        "--checkpoint-every",
        str(args.leg),
        "--threads",
        str(args.threads),
        "--model-query-max-len",
        "32",
        "--model-passage-max-len",
        "160",
        "--model-freeze-word-embeddings",
        "--no-model-colbert-query-augmentation",
        "--out",
        str(out),
        "--resume",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _curve(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--triples", type=Path, required=True, help="teacher score file (margin-mse) or triples")
    ap.add_argument("--loss", default="margin-mse")
    ap.add_argument("--arch", default="colbert")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--leg", type=int, default=20, help="steps per alternating leg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=dated("bf16_training", "cpu"))
    args = ap.parse_args()
    seconds = {"fp32": 0.0, "bf16": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {p: Path(tmp) / p for p in seconds}
        for stop in range(args.leg, args.steps + 1, args.leg):
            for precision, out in dirs.items():
                _train(out, precision, args, stop)
                seconds[precision] += json.loads((out / "manifest.json").read_text())["seconds_this_run"]
        curves = {p: _curve(d) for p, d in dirs.items()}
    diff = np.abs(np.array(curves["fp32"]) - np.array(curves["bf16"]))
    window = max(args.steps // 6, 1)
    smooth = {p: [float(np.mean(c[i : i + window])) for i in range(0, len(c), window)] for p, c in curves.items()}
    result = {
        "arch": args.arch,
        "loss": args.loss,
        "steps": args.steps,
        "batch_size": 16,
        "threads": args.threads,
        "seconds_per_step": {p: s / args.steps for p, s in seconds.items()},
        "step_time_ratio_fp32_over_bf16": seconds["fp32"] / seconds["bf16"],
        "loss_mean_abs_diff_per_step": float(diff.mean()),
        "loss_mean": {p: float(np.mean(c)) for p, c in curves.items()},
        f"loss_mean_per_{window}_steps": smooth,
        "losses": curves,
        "command": " ".join(["python -m studies.bf16_training", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for p, c in curves.items():
        ax.plot(range(1, len(c) + 1), c, alpha=0.35, label=f"{p} per step")
        ax.plot([window * (i + 0.5) for i in range(len(smooth[p]))], smooth[p], marker="o", label=f"{p}, mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{args.loss} loss")
    ax.set_title(f"{args.arch}: bf16 autocast vs fp32 (step time ratio {result['step_time_ratio_fp32_over_bf16']:.2f}x)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    print(json.dumps({k: v for k, v in result.items() if k not in ("losses",)}, indent=2))


if __name__ == "__main__":
    main()
