"""The latency benchmark end to end on tiny models: it builds what it needs, starts and stops its own
server, writes one record per model x candidates x concurrency, and reports sheds as a rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DL19_MINI

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = '{"query_max_len": 12, "passage_max_len": 40}'
FIELDS = {"arch", "candidates", "concurrency", "p50_ms", "p95_ms", "p99_ms", "qps", "pairs_per_s", "shed_rate"}


@pytest.fixture(scope="module")
def bench_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("torch")
    work = tmp_path_factory.mktemp("bench-latency")
    out = work / "latency.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/latency.py"),
        "--quick",
        "--base",
        str(tiny_base),
        "--lengths",
        LENGTHS,
        "--data",
        str(DL19_MINI),
        "--queries",
        "3",
        "--work",
        str(work),
        "--candidates",
        "5,30",
        "--interleave-candidates",
        "30",
        "--concurrency",
        "1,2",
        "--requests",
        "4",
        "--cell-seconds",
        "0",
        "--rounds",
        "2",
        "--colbert-dims",
        "8",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)  # not the repository root
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, json.loads(out.read_text())


def test_zero_setup_run_writes_every_cell(bench_run: tuple[Path, dict]) -> None:
    _, report = bench_run
    records = report["records"]
    cells = {(r["model"], r["candidates"], r["concurrency"]) for r in records}
    models = {"teacher", "teacher-int8", "colbert", "colbert-d8", "colbert-text", "bert-dot", "tk"}
    assert cells == {(m, n, c) for m in models for n in (5, 30) for c in (1, 2)}
    for r in records:
        assert set(r) >= FIELDS, r
        assert r["ok"] == 4 and r["shed_rate"] == 0.0 and r["p50_ms"] > 0 and r["pairs_per_s"] > 0
    assert {r["arch"] for r in records} == {"bert_cat", "colbert", "bert_dot", "tk"}
    assert report["command"].startswith("python -m benchmarks.latency")
    phase = report["interleaved"]
    assert set(phase) == {"teacher", "colbert", "colbert-d8", "bert-dot", "tk"}
    for row in phase.values():
        assert row["rounds"] == 2 and row["candidates"] == 30 and row["teacher_over_model_grpc"] > 0
        assert row["http_p50_ms"] > 0 and "http_overhead_p50_ms" in row  # the same rounds over HTTP


def test_projected_colbert_has_its_own_model_and_store(bench_run: tuple[Path, dict]) -> None:
    work, _ = bench_run
    (store,) = work.glob("*/store-colbert-d8-*/manifest.json")
    (full,) = work.glob("*/store-colbert-residual*/manifest.json")
    assert json.loads(store.read_text())["dim"] == 8  # the projection's width, not the encoder's
    assert json.loads(full.read_text())["dim"] > 8


def test_colbert_dims_must_be_positive_integers() -> None:
    code = """
from benchmarks.latency_build import dims
assert dims("") == () and dims("128, 64") == (128, 64)
for bad in ("x", "0", "-8"):
    try:
        dims(bad)
    except SystemExit as exc:
        assert "--colbert-dims" in str(exc), exc
    else:
        raise AssertionError(bad)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_second_run_reuses_the_cache(bench_run: tuple[Path, dict], tiny_base: Path) -> None:
    work, _ = bench_run
    stamp = {p: p.stat().st_mtime for p in work.glob("*/onnx-*/manifest.json")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.latency",
            "--base",
            str(tiny_base),
            "--lengths",
            LENGTHS,
            "--data",
            str(DL19_MINI),
            "--queries",
            "3",
            "--work",
            str(work),
            "--models",
            "colbert",
            "--candidates",
            "5",
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--cell-seconds",
            "0",
            "--rounds",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "building" not in proc.stdout
    assert stamp and stamp == {p: p.stat().st_mtime for p in work.glob("*/onnx-*/manifest.json")}


def test_sheds_are_a_rate_not_a_failure(bench_run: tuple[Path, dict]) -> None:
    """A deployed server (--config) whose pre-stage bound refuses concurrent text requests: the run
    finishes and the cell reports the refusals as its shed rate."""
    work, _ = bench_run
    text = next(work.glob("*/server-cpu.toml")).read_text()
    text = text.replace("max_queue_ms = 0", "max_queue_ms = 0\nmax_pending_encodes = 30")
    config = work / "shedding.toml"
    config.write_text(text)
    out = work / "shed.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.latency",
            "--config",
            str(config),
            "--data",
            str(DL19_MINI),
            "--models",
            "colbert-text",
            "--candidates",
            "20",
            "--concurrency",
            "4",
            "--requests",
            "24",
            "--cell-seconds",
            "0",
            "--shed-backoff-ms",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cell,) = json.loads(out.read_text())["records"]
    assert cell["requests"] == 24 and cell["ok"] + cell["shed"] == 24
    assert cell["shed"] > 0 and cell["shed_rate"] == round(cell["shed"] / 24, 3) and not cell["errors"]
    assert "shed" in proc.stdout


def test_requests_beyond_a_query_list_take_other_queries_candidates() -> None:
    code = f"""
from benchmarks.latency import make_requests
from reranker.data import DataFolder
folder = DataFolder.open({str(DL19_MINI)!r})
qids = sorted(folder.run("bm25"))
for (_, ids), q in zip(make_requests(folder, qids, 30, by_id=True), qids, strict=True):
    own = [p for p, _ in folder.run("bm25")[q]]
    assert len(ids) == len(set(ids)) == 30 and ids[: len(own)] == own, (q, ids)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_gpu_script_falls_back_to_the_cpu(bench_run: tuple[Path, dict], tiny_base: Path, tmp_path: Path) -> None:
    """benchmarks/gpu/run.sh with PROVIDER=cpu: no install, the same JSON as the CPU benchmark."""
    work, _ = bench_run
    env = {**os.environ, "PROVIDER": "cpu", "SKIP_INSTALL": "1", "WORK": str(work), "OUT": str(tmp_path), "PY": sys.executable}
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks/gpu/run.sh"),
            "--base",
            str(tiny_base),
            "--lengths",
            LENGTHS,
            "--data",
            str(DL19_MINI),
            "--queries",
            "3",
            "--candidates",
            "30",
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--cell-seconds",
            "0",
            "--rounds",
            "1",
            "--interleave-candidates",
            "30",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "latency-cpu.json").read_text())
    assert {r["model"] for r in report["records"]} == {"teacher", "colbert", "colbert-text", "bert-dot", "tk"}
    assert all(set(r) >= FIELDS and r["provider"] == "CPUExecutionProvider" for r in report["records"])
    assert set(report["interleaved"]) == {"teacher", "colbert", "bert-dot", "tk"}


def test_students_in_int8_get_stores_of_their_own(tmp_path: Path) -> None:
    code = f"""
from pathlib import Path
from benchmarks.latency_build import models
served = models(["bert_cat", "colbert"], Path({str(tmp_path)!r}), "k", ("fp32",), student_precisions=("fp32", "int8"))
by_name = {{m["name"]: m for m in served}}
assert set(by_name) == {{"teacher", "colbert", "colbert-int8", "colbert-text"}}, by_name
assert by_name["colbert-int8"]["artifact"].endswith("onnx-colbert-int8")
assert by_name["colbert-int8"]["store"] != by_name["colbert"]["store"]  # built by the int8 passage encoder
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
