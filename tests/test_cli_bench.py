"""``reranker bench``: the product's benchmarks by name, from a checkout's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reranker.cli import main
from reranker.cli.bench import benchmarks, run_benchmark
from reranker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_benchmark_is_a_module_with_a_main(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    names = benchmarks()
    assert {"latency", "soak", "fuzz"} <= set(names)
    for name in names:
        source = (ROOT / "benchmarks" / f"{name}.py").read_text(encoding="utf-8")
        assert 'if __name__ == "__main__":' in source, name


def test_no_name_lists_them(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["bench"]) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "grpc_floor" in out


def test_an_unknown_name_is_refused_with_the_allowed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=r"unknown benchmark 'peers'; allowed: .*latency"):
        run_benchmark("peers", [])  # a study, not a benchmark


def test_a_benchmark_runs_with_its_own_arguments(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    argv = list(sys.argv)
    assert run_benchmark("grpc-floor", ["--help"]) == 0
    assert "--requests" in capsys.readouterr().out
    assert sys.argv == argv
    assert run_benchmark("grpc_floor", ["--no-such-option"]) == 2  # argparse's exit status, passed on


def test_outside_a_checkout_the_error_says_where_to_run(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "reranker"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a checkout on the path would be found
    done = subprocess.run([str(cli), "bench"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "from the root of a checkout" in done.stderr
