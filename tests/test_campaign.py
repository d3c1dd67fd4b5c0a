"""The training campaign: training pauses at a deadline, a compact committed state resumes it, and
the state folder round-trips what a later run needs; the CPU facts that pick the precision."""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from reranker.data import Collection, ScoredTriple, labelled_triples  # noqa: E402
from reranker.machine import CpuFacts, parse_cpuinfo  # noqa: E402
from reranker.models.checkpoint import init_from_base, load_checkpoint, save_checkpoint  # noqa: E402
from reranker.training.config import TrainConfig  # noqa: E402
from reranker.training.trainer import LOG_FILE, PAUSED, STATE_FILE, Trainer  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"query_max_len": 16, "passage_max_len": 48, "freeze_word_embeddings": True}


@pytest.fixture
def campaign(monkeypatch: pytest.MonkeyPatch):
    """benchmarks.campaign, imported from the repository root (tests import in importlib mode)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks.campaign")


def _trainer(tiny_base: Path, out: Path, **cfg) -> Trainer:
    collection = Collection.open(DL19_MINI)
    triples = [
        ScoredTriple(t.qid, t.pos, t.neg, 2.0, -1.0) for t in labelled_triples(collection, "bm25", max_per_query=8, seed=0)
    ]
    settings = {
        "steps": 6,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_steps": 0,
        "checkpoint_every": 100,
        "validate_every": 0,
        "val_fraction": 0.0,
        "seed": 3,
        "precision": "fp32",
        **cfg,
    }
    return Trainer(init_from_base("colbert", tiny_base, **SMALL), collection, triples, TrainConfig(**settings), out)


def test_a_deadline_pauses_with_a_checkpoint_and_a_compact_one_resumes(tiny_base: Path, tmp_path: Path, campaign) -> None:
    paused = _trainer(tiny_base, tmp_path / "run").train(progress=False, deadline=0.0)
    assert paused["status"] == PAUSED and paused["steps"] == 1
    ckpt = tmp_path / "run" / "checkpoint"
    assert json.loads((ckpt / STATE_FILE).read_text())["step"] == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()  # no final model while paused

    # what a campaign commits: fp16 weights without the frozen word embeddings, no optimiser or RNG state
    compact = tmp_path / "compact"
    campaign._pack(ckpt, compact, base=str(tiny_base))
    assert (compact / "model.safetensors").stat().st_size < (ckpt / "model.safetensors").stat().st_size / 2
    state = (ckpt / STATE_FILE).read_text()
    shutil.rmtree(ckpt)
    shutil.copytree(compact, ckpt)
    (ckpt / STATE_FILE).write_text(state)
    resumed = _trainer(tiny_base, tmp_path / "run", precision="bf16")  # precision may change with the machine
    done = resumed.train(resume=True, progress=False)
    assert done["status"] == "done" and done["steps"] == 6
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / LOG_FILE).read_text().splitlines()] == list(range(1, 7))
    assert load_checkpoint(tmp_path / "run").config.arch == "colbert"


def test_resume_still_refuses_other_settings_than_precision(tiny_base: Path, tmp_path: Path) -> None:
    from reranker.errors import ConfigError

    _trainer(tiny_base, tmp_path).train(progress=False, deadline=0.0)
    with pytest.raises(ConfigError, match="seed"):
        _trainer(tiny_base, tmp_path, seed=4).train(resume=True, progress=False)


def test_state_round_trips_scores_results_and_models(tiny_base: Path, tmp_path: Path, campaign) -> None:
    runs, state, again = tmp_path / "runs", tmp_path / "campaign", tmp_path / "runs2"
    (runs / "members" / "e5").mkdir(parents=True)
    lines = "".join(f"{i * 0.5}\t{i * 0.25}\tq{i}\tp{i}\tn{i}\n" for i in range(20_000))  # > GZIP_OVER
    (runs / "teacher-scores-colbert.tsv").write_text(lines)
    (runs / "members" / "e5" / "trec-dl-2019-bm25.json").write_text('{"ndcg@10": 0.5}\n')
    (runs / "pairs.tsv").write_text("remade by the candidates phase\n")
    loaded = init_from_base("colbert", tiny_base, **SMALL)
    save_checkpoint(runs / "colbert-L6-kd", loaded, {"steps": 3})
    (runs / "colbert-L6-kd" / ".done").write_text("")
    save_checkpoint(runs / "zs-colbert-L6", loaded, {"steps": 0})  # zero-shot starts are remade
    (runs / "colbert-L6-kd" / "checkpoint").mkdir()
    (runs / "colbert-L6-kd" / "checkpoint" / "optimizer.safetensors").write_bytes(b"x" * 10)  # never state
    (runs / "bench-latency").mkdir()
    (runs / "bench-latency" / "big.onnx").write_bytes(b"x")  # not reproduce.sh's: not state

    written = campaign.snapshot(runs, state, base=str(tiny_base))
    assert (state / "teacher-scores-colbert.tsv.gz").is_file() and not (state / "pairs.tsv").exists()
    assert not (state / "zs-colbert-L6").exists() and not (state / "bench-latency").exists()
    assert not list(state.rglob("optimizer.safetensors*"))
    assert json.loads((state / "colbert-L6-kd" / "manifest.json").read_text())["weights_dtype"] == "float16"
    assert "colbert-L6-kd" in written
    assert campaign.snapshot(runs, state, base=str(tiny_base)) == []  # nothing changed, nothing rewritten
    campaign.write_manifest(state, [{"wall_minutes": 1.0, "cpu_minutes": 2.0}], runs, "zs-colbert mpnet")
    manifest = json.loads((state / "manifest.json").read_text())
    assert manifest["members"] == "zs-colbert mpnet" and manifest["spent"] == {"wall_minutes": 1.0, "cpu_minutes": 2.0}
    assert "colbert-L6-kd/manifest.json" in manifest["files"] and "manifest.json" not in manifest["files"]

    campaign.restore(state, again)
    assert (again / "teacher-scores-colbert.tsv").read_text() == lines
    assert (again / "members" / "e5" / "trec-dl-2019-bm25.json").read_text() == '{"ndcg@10": 0.5}\n'
    assert (again / "colbert-L6-kd" / ".done").is_file()
    assert load_checkpoint(again / "colbert-L6-kd").config.arch == "colbert"
    with gzip.open(state / "teacher-scores-colbert.tsv.gz", "rt") as f:
        assert f.readline().split("\t")[2] == "q0"
    assert campaign.snapshot(again, state, base=str(tiny_base)) == []  # a restored copy is not packed again

    log = runs / "members" / "e5" / "log.jsonl"  # a file that grows past GZIP_OVER between snapshots
    log.write_text("{}\n")
    campaign.snapshot(runs, state, base=str(tiny_base))
    log.write_text(lines)
    campaign.snapshot(runs, state, base=str(tiny_base))
    assert (state / "members" / "e5" / "log.jsonl.gz").is_file() and not (state / "members" / "e5" / "log.jsonl").exists()


def test_cpu_facts_pick_bf16_only_where_it_is_native() -> None:
    zen4 = parse_cpuinfo("model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n", 2)
    epyc = parse_cpuinfo("model name\t: AMD EPYC 7R13\nflags\t\t: fpu avx2 fma\n", 2)
    assert zen4.bf16_native and zen4.int8_native and zen4.flags == ("avx2", "avx512f", "avx512_bf16", "avx512_vnni")
    assert not epyc.bf16_native and not epyc.int8_native
    assert epyc.describe() == "AMD EPYC 7R13, 2 cores, avx2"
    assert parse_cpuinfo("", 1) == CpuFacts(parse_cpuinfo("", 1).model, 1, ())
    with pytest.raises(Exception, match="precision"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]


def test_teacher_names_the_campaigns_current_bert_cat(tiny_base: Path, tmp_path: Path) -> None:
    from reranker.errors import ArtifactError
    from reranker.models.checkpoint import campaign_teacher

    with pytest.raises(ArtifactError, match=r"reproduce\.sh campaign"):
        campaign_teacher((tmp_path,))
    loaded = init_from_base("bert_cat", tiny_base, freeze_word_embeddings=True, query_max_len=16, passage_max_len=48)
    save_checkpoint(tmp_path / "campaign" / "bert_cat-margins" / "checkpoint", loaded, {"steps": 250})
    assert campaign_teacher((tmp_path,)) == tmp_path / "campaign" / "bert_cat-margins" / "checkpoint"
    save_checkpoint(tmp_path / "campaign" / "bert_cat", loaded, {"steps": 100})  # the labels stage, finished
    assert campaign_teacher((tmp_path,)) == tmp_path / "campaign" / "bert_cat"
    assert load_checkpoint(campaign_teacher((tmp_path,))).config.arch == "bert_cat"


def test_a_stop_event_pauses_like_a_deadline(tiny_base: Path, tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    stop.set()  # what SIGTERM does to 'reranker train'
    paused = _trainer(tiny_base, tmp_path).train(progress=False, stop=stop)
    assert paused["status"] == PAUSED and paused["steps"] == 1
    assert json.loads((tmp_path / "checkpoint" / STATE_FILE).read_text())["step"] == 1


def test_validation_curves_are_read_from_the_logs_and_plotted(tmp_path: Path, campaign) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "bert_cat-margins").mkdir()
    records = [
        {"step": 1, "loss": 0.9},
        {"step": 250, "loss": 0.5, "validation": {"ndcg@10": 0.47}},
        {"step": 500, "loss": 0.4, "validation": {"ndcg@10": 0.52}},
    ]
    (tmp_path / "bert_cat-margins" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert campaign.curves(tmp_path) == {"bert_cat-margins": [(250, 0.47), (500, 0.52)]}
    assert campaign.plot_curves(tmp_path, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not campaign.plot_curves(tmp_path / "bert_cat-margins", tmp_path / "none.png")


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_pause_stops_the_whole_phase_group_and_resume_records_the_pause(tmp_path: Path, campaign) -> None:
    """--pause stops the phase's process group (a child that the phase started too: the trainer), not
    only the driver; --resume continues it and the pause is counted in the run's paused minutes."""
    import subprocess
    import sys
    import time

    phase = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])"],
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        child = int(subprocess.run(["pgrep", "-P", str(phase.pid)], capture_output=True, text=True).stdout.split()[0])
        (tmp_path / campaign.LIVE).write_text(json.dumps({"phase": "teacher", "phase_pgid": phase.pid}))
        started = time.time()
        assert campaign.main(["--runs", str(tmp_path), "--pause"]) == 0
        time.sleep(0.2)
        assert _state(phase.pid) == "T" and _state(child) == "T"
        assert "already paused" in campaign.pause(tmp_path)
        time.sleep(0.6)
        assert campaign.main(["--runs", str(tmp_path), "--resume"]) == 0
        time.sleep(0.2)
        assert _state(child) in ("S", "R")
        assert 0.6 / 60 <= campaign.paused_minutes(tmp_path, started) * 1.01 <= 2.0 / 60
        assert campaign.resume(tmp_path) == "the campaign was not paused"
    finally:
        import os
        import signal

        os.killpg(phase.pid, signal.SIGKILL)
        phase.wait()
    with pytest.raises(SystemExit, match="no campaign is running"):
        campaign.pause(tmp_path / "elsewhere")


def test_every_student_folder_of_reproduce_sh_is_state(campaign) -> None:
    kept = ["colbert-L6-kd", "colbert-L6-d128-kd", "colbert-L6-d128-nokd", "bert_dot-L3-nokd", "tk-L6-kd", "bert_cat-margins"]
    dropped = ["bench-latency", "codec-d128", "colbert-L6-d128", "teacher-6000"]
    assert [n for n in kept if not campaign.OUTPUTS.match(n)] == []
    assert [n for n in dropped if campaign.OUTPUTS.match(n)] == []
