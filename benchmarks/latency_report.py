"""The latency benchmark's reporting: the machine, the server's /metrics deltas, the interleaved
phase's summary and the printed tables."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import urllib.request
from typing import Any

from benchmarks._common import cpu_model, percentile

METRICS = re.compile(
    r"^(reranker_(?:batch_size|queue_duration_seconds|inference_duration_seconds)_(?:sum|count))"
    r'\{model="([^"]+)"\} (\S+)$'
)


def machine(models: list[Any]) -> dict[str, Any]:
    """CPU, its flags that decide precision (reranker.machine), cores, GPU (nvidia-smi), Python, ONNX
    Runtime, the providers the models run on, load."""
    import onnxruntime

    from reranker.machine import cpu_facts

    gpu = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            or None
        )
    return {
        "cpu": cpu_model(),
        "flags": list(cpu_facts().flags),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "providers": sorted({m.provider for m in models}),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def scrape(metrics: str | None) -> dict[tuple[str, str], float]:
    """(metric name, model label) -> value for the sums and counts this report uses ({} without metrics)."""
    if not metrics:
        return {}
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = METRICS.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def delta(after: dict, before: dict, model: str) -> dict[str, float]:
    """Mean batch size, queue ms per request and inference ms per batch between two scrapes."""

    def d(name: str) -> float:
        return after.get((name, model), 0.0) - before.get((name, model), 0.0)

    batches = d("reranker_batch_size_count")
    if not batches:
        return {}
    requests = d("reranker_queue_duration_seconds_count") or 1
    return {
        "mean_batch_size": round(d("reranker_batch_size_sum") / batches, 1),
        "mean_queue_ms": round(1000 * d("reranker_queue_duration_seconds_sum") / requests, 2),
        "mean_inference_ms_per_batch": round(1000 * d("reranker_inference_duration_seconds_sum") / batches, 2),
    }


def summary(times: dict[str, dict[str, list[float]]], served: list[dict]) -> dict[str, Any]:
    """Per model: gRPC and in-process p50 / p95, the median of the paired gRPC - in-process differences,
    and the teacher's p50 over the model's (the speed-up; same run, same rounds)."""
    out: dict[str, Any] = {}
    teacher = times.get("teacher")
    for m in served:
        t = times[m["name"]]
        g, p = t["grpc"], t["in_process"]
        row = {
            "arch": m["arch"],
            "input": "ids" if m.get("store") else "text",
            "candidates": 100,
            "rounds": len(g),
            "grpc_p50_ms": round(percentile(g, 0.5), 2),
            "grpc_p95_ms": round(percentile(g, 0.95), 2),
            "in_process_p50_ms": round(percentile(p, 0.5), 2),
            "in_process_p95_ms": round(percentile(p, 0.95), 2),
            "grpc_overhead_p50_ms": round(statistics.median(a - b for a, b in zip(g, p, strict=True)), 2),
        }
        h = t.get("http")
        if h:  # the same rounds over HTTP: its p50 and the median of the paired HTTP - in-process differences
            row["http_p50_ms"] = round(percentile(h, 0.5), 2)
            row["http_p95_ms"] = round(percentile(h, 0.95), 2)
            row["http_overhead_p50_ms"] = round(statistics.median(a - b for a, b in zip(h, p, strict=True)), 2)
        if teacher:
            row["teacher_over_model_grpc"] = round(percentile(teacher["grpc"], 0.5) / row["grpc_p50_ms"], 1)
            row["teacher_over_model_in_process"] = round(percentile(teacher["in_process"], 0.5) / row["in_process_p50_ms"], 1)
        out[m["name"]] = row
    return out


def print_table(records: list[dict], phase: dict[str, Any]) -> None:
    """Markdown tables of the cells and of the interleaved phase."""
    print(
        "\n| model | arch | input | N | C | p50 ms | p95 ms | p99 ms | q/s | pairs/s | shed rate | mean batch |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in records:
        print(
            f"| {r['model']} | {r['arch']} | {r['input']} | {r['candidates']} | {r['concurrency']} | {r['p50_ms']} | "
            f"{r['p95_ms']} | {r['p99_ms']} | {r['qps']} | {r['pairs_per_s']} | {r['shed_rate']:.1%} | "
            f"{r.get('mean_batch_size', '-')} |"
        )
    if phase:
        print(
            "\nInterleaved, 100 candidates (one request per model per round, the legs rotating):\n"
            "| model | gRPC p50 ms | HTTP p50 ms | in-process p50 ms | gRPC overhead p50 ms | HTTP overhead p50 ms | "
            "teacher / model (gRPC) | teacher / model (in process) |\n|---|---|---|---|---|---|---|---|"
        )
        for name, r in phase.items():
            print(
                f"| {name} | {r['grpc_p50_ms']} | {r.get('http_p50_ms', '-')} | {r['in_process_p50_ms']} | "
                f"{r['grpc_overhead_p50_ms']} | {r.get('http_overhead_p50_ms', '-')} | "
                f"{r.get('teacher_over_model_grpc', '-')}x | {r.get('teacher_over_model_in_process', '-')}x |"
            )
