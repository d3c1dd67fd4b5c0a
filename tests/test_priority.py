"""The engine's worker threads run below the event loop (EngineConfig.worker_nice)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig
from reranker.engine.priority import lower_priority
from reranker.errors import ConfigError

pytest.importorskip("onnxruntime")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _task_nices() -> dict[str, list[int]]:
    """Thread name -> nice values of this process's threads (from /proc)."""
    out: dict[str, list[int]] = {}
    for task in Path("/proc/self/task").iterdir():
        name = (task / "comm").read_text().strip()
        out.setdefault(name, []).append(int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]))
    return out


@linux
def test_lowering_is_per_thread() -> None:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: (lower_priority(3), seen.append(_nice())))
    thread.start()
    thread.join()
    assert seen == [_nice() + 3]  # this thread is untouched


@linux
def test_pre_stage_batches_and_onnx_runtime_threads_run_below_the_loop(tiny_exports) -> None:
    base = _nice()
    spec = ModelSpec("m", str(tiny_exports["bert_cat"][1]))
    cfg = EngineConfig(models=(spec,), runtime=RuntimeConfig(intra_op_threads=2), worker_nice=4, warmup=False)
    with LocalEngine(cfg) as local:
        engine = local.engine
        assert engine._query_pool.submit(_nice).result() == base + 4
        assert engine._core_pool.submit(_nice).result() == base + 4
        local.rerank("q", ["a"], ["some text"])
        assert local.engine.models["m"].batcher.executor is engine._core_pool
        nices = _task_nices()
        assert any(n == base + 4 for name, ns in nices.items() if "reranker" not in name for n in ns)  # ORT's pool


def test_worker_nice_is_bounded() -> None:
    for bad in (-1, 20):
        with pytest.raises(ConfigError, match="worker_nice"):
            EngineConfig(models=(ModelSpec("m", "a"),), worker_nice=bad)
