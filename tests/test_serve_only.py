"""A serve-only environment (pip install '.[serve]', no torch) serves the default and answers Rerank:
runs scripts/serve_only_check.sh (a fresh venv; pip reuses its cache; about 2-6 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_serve_only_install_answers_rerank(tmp_path) -> None:
    env = {**os.environ, "WORK": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve_only_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "serve_only_check: OK" in result.stdout
    assert "torch and transformers are not importable" in result.stdout
    assert "assembling the default model's ONNX graphs" in result.stdout
