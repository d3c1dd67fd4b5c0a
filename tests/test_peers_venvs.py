"""The peers in venvs of their own (studies/peers/venvs.py, studies/peers/extra.py): a missing venv is
reported per system, the JSON-lines protocol round-trips with a fake runner, a runner that breaks the
protocol or dies is reported as not run, and the real runner answers the protocol (no infinity needed)."""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SPEED = [("q one", [("p1", "a passage"), ("p2", "another, longer passage")]), ("q two", [("p3", "x")])]
QUALITY = [("q three", [("p4", "abc"), ("p5", "abcdef")])]
FAKE = textwrap.dedent("""
    import argparse, json, sys
    ap = argparse.ArgumentParser()
    for a in ("--hf-dir", "--pairs", "--batches", "--max-length", "--work", "--systems"):
        ap.add_argument(a)
    args = ap.parse_args()
    pairs = json.load(open(args.pairs))
    names = args.systems.split(";")
    mode = open(args.hf_dir + "/mode").read().strip()
    if mode == "garbage":
        print("loading...", flush=True)
    if mode == "die":
        sys.exit(3)
    print(json.dumps({"ready": True, "systems": [n for n in names if n != "broken"],
                      "not_run": {"broken": "ImportError: no module named broken"}, "versions": {"fake": "1.0"}}),
          flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        if cmd["system"] not in names or cmd["system"] == "broken":
            print(json.dumps({"system": cmd["system"], "error": "KeyError: unknown"}), flush=True)
        elif cmd["op"] == "time":
            n = len(pairs["speed"][: cmd["requests"]])
            print(json.dumps({"system": cmd["system"], "rates": {b: 100.0 * n + int(b)
                  for b in args.batches.split(",")}}), flush=True)
        else:
            print(json.dumps({"system": cmd["system"], "scores": [[len(p) * cmd["batch"] for p in r["passages"]]
                  for r in pairs["quality"]]}), flush=True)
""")


@pytest.fixture
def pv(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """studies.peers.venvs, imported from the repository root (tests import in importlib mode)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("studies.peers.venvs")


@pytest.fixture
def runner_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """studies.peers.extra (the runner: standard library only at import)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("studies.peers.extra")


def fake_root(tmp_path: Path, mode: str = "ok") -> tuple[Path, Path, Path]:
    """A repository root holding .venv-fake (its python: this interpreter), a fake runner, an HF folder."""
    bindir = tmp_path / ".venv-fake/bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(sys.executable)
    runner = tmp_path / "fake_runner.py"
    runner.write_text(FAKE)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "mode").write_text(mode)
    return tmp_path, runner, hf


def test_missing_venvs_are_reported_per_system_with_the_setup_command(tmp_path: Path, pv: ModuleType) -> None:
    found, not_run, versions = pv.start_runners(
        tmp_path / "hf", SPEED, QUALITY, [16], 64, tmp_path / "work", skip={"infinity, torch"}, root=tmp_path
    )
    assert found == {} and versions == {}
    expected = {s for systems in pv.VENVS.values() for s in systems} - {"infinity, torch"}
    assert set(not_run) == expected
    assert all("does not exist" in why and pv.SETUP in why for why in not_run.values())


def test_protocol_round_trip_with_a_fake_runner(tmp_path: Path, pv: ModuleType) -> None:
    root, runner, hf = fake_root(tmp_path)
    found, not_run, versions = pv.start_runners(
        hf,
        SPEED,
        QUALITY,
        [16, 32],
        64,
        tmp_path / "work",
        skip={"c"},
        root=root,
        runner=runner,
        venvs={".venv-fake": ("a", "b", "c", "broken")},
    )
    try:
        assert set(found) == {"a", "b"} and found["a"] is found["b"]
        assert not_run == {"broken": "ImportError: no module named broken"}
        assert versions == {".venv-fake": {"fake": "1.0"}}
        assert found["a"].time("a", 1) == {16: 116.0, 32: 132.0}  # the warm-up: first request only
        assert found["b"].time("b", None) == {16: 216.0, 32: 232.0}  # every speed request
        scores = found["a"].scores("a", 32)
        assert len(scores) == 1 and scores[0].dtype == np.float32
        np.testing.assert_array_equal(scores[0], [3 * 32, 6 * 32])  # the quality request's texts were handed over
        with pytest.raises(pv.RunnerError, match="KeyError: unknown"):
            found["a"].time("c", None)
    finally:
        pv.close_runners(found)
    assert found["a"].proc.returncode == 0


@pytest.mark.parametrize(("mode", "message"), [("garbage", "not JSON"), ("die", "exited \\(code 3\\)")])
def test_a_runner_that_breaks_the_protocol_is_not_run(tmp_path: Path, mode: str, message: str, pv: ModuleType) -> None:
    root, runner, hf = fake_root(tmp_path, mode)
    found, not_run, _ = pv.start_runners(
        hf, SPEED, QUALITY, [16], 64, tmp_path / "work", skip=set(), root=root, runner=runner, venvs={".venv-fake": ("a",)}
    )
    pv.close_runners(found)
    assert found == {}
    assert set(not_run) == {"a"}
    assert "the runner of .venv-fake failed" in not_run["a"]
    assert re.search(message, not_run["a"]), not_run["a"]


def test_the_real_runner_reports_an_unknown_system_and_answers_errors(tmp_path: Path, pv: ModuleType) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"speed": [{"query": "q", "passages": ["p"]}], "quality": []}))
    r = pv.Runner(Path(sys.executable), hf, pairs, [8], 48, tmp_path / "work", ("no such peer",), pv.RUNNER)
    try:
        assert r.systems == []
        assert "unknown system 'no such peer'" in r.not_run["no such peer"]
        assert all(isinstance(v, str) for v in r.versions.values())
        with pytest.raises(pv.RunnerError, match="not loaded"):
            r.time("no such peer", None)
    finally:
        r.close()
    assert r.proc.returncode == 0
    # the copy truncates as the other peers do; the handed folder is left alone
    assert json.loads((tmp_path / "work/hf/tokenizer_config.json").read_text())["model_max_length"] == 48
    assert json.loads((hf / "tokenizer_config.json").read_text())["model_max_length"] == 512
    # another model's weights in the same work folder: the cached copy and exports start afresh
    (tmp_path / "work/onnx-fp32").mkdir()
    (hf / "config.json").write_text('{"hidden_size": 8}')
    pv.Runner(Path(sys.executable), hf, pairs, [8], 48, tmp_path / "work", ("no such peer",), pv.RUNNER).close()
    assert not (tmp_path / "work/onnx-fp32").exists()
    assert (tmp_path / "work/hf/config.json").read_text() == '{"hidden_size": 8}'


def test_serve_times_scores_and_rejects_bad_commands(monkeypatch: pytest.MonkeyPatch, runner_module: ModuleType) -> None:
    calls: list[tuple[int, str, int]] = []

    def system(batch: int):  # a ByBatch
        def score(query: str, texts: list[str]) -> list[float]:
            calls.append((batch, query, len(texts)))
            return [float(len(t)) for t in texts]

        return score

    pairs = {
        "speed": [{"query": "q1", "passages": ["a", "bb"]}, {"query": "q2", "passages": ["c"]}],
        "quality": [{"query": "q3", "passages": ["ddd", "e"]}],
    }
    cmds = [
        {"op": "time", "system": "s", "requests": 1},
        {"op": "score", "system": "s", "batch": 4},
        {"op": "time", "system": "t", "requests": None},
        {"op": "fly", "system": "s"},
        {"op": "quit"},
        {"op": "time", "system": "s", "requests": None},
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(c) + "\n" for c in cmds)))
    out: list[dict] = []
    runner_module.serve({"s": system}, pairs, [4, 8], out.append)
    assert len(out) == 4  # nothing after quit
    assert set(out[0]["rates"]) == {"4", "8"} and all(v > 0 for v in out[0]["rates"].values())
    assert calls[:2] == [(4, "q1", 2), (8, "q1", 2)]
    assert out[1] == {"system": "s", "scores": [[3.0, 1.0]]}
    assert "not loaded system 't'" in out[2]["error"]
    assert "unknown op 'fly'" in out[3]["error"] and "allowed: time, score, quit" in out[3]["error"]
