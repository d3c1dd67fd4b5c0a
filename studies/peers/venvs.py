"""The peers of studies/peers/__main__.py that live in venvs of their own (studies/peers/extra-setup.sh): each
venv's runner (studies/peers/extra.py) is started once as a subprocess, loads its systems, and is then
asked to time or score one system at a time, so that these systems take their turn in the same rounds
as the in-process ones. A venv that is missing, or a runner that fails, is reported per system as not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT

RUNNER = ROOT / "studies/peers/extra.py"
VENVS: dict[str, tuple[str, ...]] = {
    ".venv-peers": ("infinity, torch", "infinity, optimum ONNX", "infinity, optimum ONNX int8"),
    ".venv-peers-st": ("ST, ONNX fp32", "ST, ONNX int8 (avx512_vnni)"),
}
"""Venv (relative to the repository root) -> the systems its runner is asked to load."""
SETUP = "studies/peers/extra-setup.sh"


class RunnerError(RuntimeError):
    """The runner answered with an error, answered nothing, or broke the protocol."""


class Runner:
    """One runner subprocess: ``python RUNNER --hf-dir ... --pairs ...``; JSON lines on its stdin/stdout.

    ``systems`` (loaded), ``not_run`` ({system: why}) and ``versions`` ({package: version}) come from its
    first line. Raises RunnerError when it exits or answers something else than the protocol's JSON.
    """

    def __init__(
        self,
        python: Path,
        hf_dir: Path,
        pairs: Path,
        batches: list[int],
        max_length: int,
        work: Path,
        systems: tuple[str, ...],
        runner: Path = RUNNER,
    ) -> None:
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the venv's own packages only
        self.proc = subprocess.Popen(
            [
                str(python),
                str(runner),
                "--hf-dir",
                str(hf_dir),
                "--pairs",
                str(pairs),
                "--batches",
                ",".join(map(str, batches)),
                "--max-length",
                str(max_length),
                "--work",
                str(work),
                "--systems",
                ";".join(systems),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        ready = self._read()
        if not ready.get("ready"):
            raise RunnerError(f"the runner's first line is not its ready line: {ready}")
        self.systems: list[str] = list(ready["systems"])
        self.not_run: dict[str, str] = dict(ready.get("not_run", {}))
        self.versions: dict[str, str] = dict(ready.get("versions", {}))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log = [*self.log[-50:], line.rstrip()]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            tail = "\n".join(self.log[-5:])
            raise RunnerError(f"the runner exited (code {self.proc.returncode}) without answering; its log ends:\n{tail}")
        try:
            out = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunnerError(f"the runner wrote a line that is not JSON: {line[:200]!r}") from exc
        if not isinstance(out, dict):
            raise RunnerError(f"the runner wrote {type(out).__name__}, not a JSON object: {line[:200]!r}")
        return out

    def _ask(self, cmd: dict[str, Any], key: str) -> Any:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise RunnerError("the runner is gone (broken pipe)") from exc
        out = self._read()
        if "error" in out:
            raise RunnerError(str(out["error"]))
        if out.get("system") != cmd["system"] or key not in out:
            raise RunnerError(f"expected {key!r} for {cmd['system']!r}, the runner answered {str(out)[:200]}")
        return out[key]

    def time(self, system: str, requests: int | None) -> dict[int, float]:
        """Pairs/s per batch size over the first ``requests`` speed requests (None: all), timed in the runner."""
        return {int(b): float(r) for b, r in self._ask({"op": "time", "system": system, "requests": requests}, "rates").items()}

    def scores(self, system: str, batch: int) -> list[np.ndarray]:
        """Raw scores per quality request, shape [passages] each."""
        return [np.asarray(s, np.float32) for s in self._ask({"op": "score", "system": system, "batch": batch}, "scores")]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def start_runners(
    hf_dir: Path,
    speed: list[tuple[str, list]],
    quality: list[tuple[str, list]],
    batches: list[int],
    max_length: int,
    work: Path,
    skip: set[str],
    root: Path = ROOT,
    runner: Path = RUNNER,
    venvs: dict[str, tuple[str, ...]] = VENVS,
) -> tuple[dict[str, Runner], dict[str, str], dict]:
    """A runner per venv under ``root`` that exists, on the same requests ([(query, [(id, text)])]) as peers.py.

    Returns ({system: its runner}, {system: why not run}, {venv: {package: version}}).
    """
    work.mkdir(parents=True, exist_ok=True)
    pairs = work / "extra-pairs.json"
    pairs.write_text(
        json.dumps(
            {
                k: [{"query": q, "passages": [t for _, t in c]} for q, c in reqs]
                for k, reqs in (("speed", speed), ("quality", quality))
            }
        )
    )
    found: dict[str, Runner] = {}
    not_run: dict[str, str] = {}
    versions: dict[str, dict[str, str]] = {}
    for venv, systems in venvs.items():
        wanted = tuple(s for s in systems if s not in skip)
        python = root / venv / "bin/python"
        if not wanted:
            continue
        if not python.is_file():
            not_run.update({s: f"{venv} does not exist (build it with {SETUP})" for s in wanted})
            continue
        try:
            r = Runner(python, hf_dir, pairs, batches, max_length, work / venv.lstrip("."), wanted, runner)
        except (RunnerError, OSError, subprocess.TimeoutExpired) as exc:
            not_run.update({s: f"the runner of {venv} failed: {exc}"[:500] for s in wanted})
            continue
        not_run.update(r.not_run)
        versions[venv] = r.versions
        found.update({s: r for s in r.systems})
    return found, not_run, versions


def close_runners(runners: dict[str, Runner]) -> None:
    for r in {id(r): r for r in runners.values()}.values():
        r.close()
