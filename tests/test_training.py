"""Training loop: loss goes down, resume continues identically, and the CLI pipeline end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from reranker.cli import main  # noqa: E402
from reranker.data import Collection, ScoredTriple, labelled_triples  # noqa: E402
from reranker.errors import ConfigError  # noqa: E402
from reranker.models.checkpoint import init_from_base, load_checkpoint  # noqa: E402
from reranker.training.config import TrainConfig  # noqa: E402
from reranker.training.trainer import LOG_FILE, Trainer  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402

SMALL = {"query_max_len": 16, "passage_max_len": 48}


def _scored(collection: Collection, n: int) -> list[ScoredTriple]:
    triples = labelled_triples(collection, "bm25", max_per_query=n, seed=0)
    # a synthetic teacher: the margin follows the label difference
    return [ScoredTriple(t.qid, t.pos, t.neg, 2.0, -1.0) for t in triples]


def _trainer(tiny_base: Path, out: Path, triples, **cfg) -> Trainer:
    loaded = init_from_base("colbert", tiny_base, **SMALL)
    settings = {
        "steps": 6,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_steps": 0,
        "checkpoint_every": 2,
        "validate_every": 0,
        "val_fraction": 0.0,
        "seed": 3,
        **cfg,
    }
    return Trainer(loaded, Collection.open(DL19_MINI), triples, TrainConfig(**settings), out)


def test_loss_goes_down_on_a_fixed_batch(tiny_base: Path, tmp_path: Path) -> None:
    triples = _scored(Collection.open(DL19_MINI), 2)[:4]
    _trainer(tiny_base, tmp_path, triples, steps=30).train(progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_resume_continues_identically(tiny_base: Path, tmp_path: Path, monkeypatch) -> None:
    triples = _scored(Collection.open(DL19_MINI), 8)
    straight = _trainer(tiny_base, tmp_path / "a", triples)
    straight.train(progress=False)

    interrupted = _trainer(tiny_base, tmp_path / "b", triples)
    original = Trainer._loss
    calls = {"n": 0}

    def crash_after_four(self, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_loss", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train(progress=False)
    monkeypatch.setattr(Trainer, "_loss", original)
    assert json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())["step"] == 4

    resumed = _trainer(tiny_base, tmp_path / "b", triples)
    resumed.train(resume=True, progress=False)
    a, b = straight.loaded.model.state_dict(), resumed.loaded.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    log_a = (tmp_path / "a" / LOG_FILE).read_text().splitlines()
    log_b = (tmp_path / "b" / LOG_FILE).read_text().splitlines()
    assert log_a == log_b


def test_bf16_training_runs_and_tracks_fp32(tiny_base: Path, tmp_path: Path) -> None:
    """bf16 autocast changes the forward pass only: the same seed and data give a loss curve close to fp32's."""
    triples = _scored(Collection.open(DL19_MINI), 2)[:4]
    curves = {}
    for precision in ("fp32", "bf16"):
        _trainer(tiny_base, tmp_path / precision, triples, steps=12, precision=precision).train(progress=False)
        curves[precision] = [json.loads(line)["loss"] for line in (tmp_path / precision / LOG_FILE).read_text().splitlines()]
    assert curves["fp32"] != curves["bf16"]  # autocast really was on
    assert curves["bf16"][0] == pytest.approx(curves["fp32"][0], rel=0.05)
    assert sum(curves["bf16"][-3:]) < sum(curves["bf16"][:3])
    assert load_checkpoint(tmp_path / "bf16").model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arch,fresh",
    [("tk", {"contextualiser", "mixer", "scaler", "dense"}), ("prett", {"head"}), ("colbert", set()), ("bert_dot", set())],
)
def test_head_lr_reaches_exactly_the_parts_that_start_random(arch: str, fresh: set[str], tiny_base: Path) -> None:
    from reranker.training.optim import make_optimizer as _optimizer

    model = init_from_base(arch, tiny_base, **SMALL).model
    opt, names = _optimizer(model, TrainConfig(lr=1e-5, head_lr=1e-3))
    params = [p for group in opt.param_groups for p in group["params"]]
    assert len(names) == len(params) == len([p for p in model.parameters() if p.requires_grad])
    scaled = {
        n.split(".")[0]
        for group in opt.param_groups
        if group["lr_scale"] != 1.0
        for n, p in zip(names, params, strict=True)
        if any(p is q for q in group["params"])
    }
    assert scaled == fresh
    assert all(g["lr_scale"] in (1.0, 100.0) for g in opt.param_groups)
    _, plain_names = _optimizer(model, TrainConfig(lr=1e-5))
    assert sorted(plain_names) == sorted(names)
    with pytest.raises(ConfigError, match="head_lr must be >= 0"):
        TrainConfig(head_lr=-1.0)


def test_stop_at_pauses_a_run_that_resume_continues_identically(tiny_base: Path, tmp_path: Path) -> None:
    triples = _scored(Collection.open(DL19_MINI), 8)
    straight = _trainer(tiny_base, tmp_path / "a", triples)
    straight.train(progress=False)

    paused = _trainer(tiny_base, tmp_path / "b", triples, stop_at=3)
    summary = paused.train(progress=False)
    assert summary["steps"] == 3
    assert len((tmp_path / "b" / LOG_FILE).read_text().splitlines()) == 3
    resumed = _trainer(tiny_base, tmp_path / "b", triples)
    resumed.train(resume=True, progress=False)
    a, b = straight.loaded.model.state_dict(), resumed.loaded.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert (tmp_path / "a" / LOG_FILE).read_text() == (tmp_path / "b" / LOG_FILE).read_text()
    with pytest.raises(ConfigError, match="stop_at"):
        TrainConfig(steps=5, stop_at=6)


def test_resume_refuses_changed_settings(tiny_base: Path, tmp_path: Path) -> None:
    triples = _scored(Collection.open(DL19_MINI), 4)
    _trainer(tiny_base, tmp_path, triples, steps=2).train(progress=False)
    with pytest.raises(ConfigError, match="lr"):
        _trainer(tiny_base, tmp_path, triples, steps=4, lr=5e-4).train(resume=True, progress=False)


def test_margin_mse_needs_teacher_scores(tiny_base: Path, tmp_path: Path) -> None:
    plain = labelled_triples(Collection.open(DL19_MINI), "bm25", max_per_query=2, seed=0)
    with pytest.raises(ConfigError, match="teacher scores"):
        _trainer(tiny_base, tmp_path, plain)


def test_frozen_word_embeddings_do_not_move(tiny_base: Path, tmp_path: Path) -> None:
    loaded = init_from_base("bert_dot", tiny_base, freeze_word_embeddings=True, **SMALL)
    before = loaded.model.bert.embeddings.word_embeddings.weight.detach().clone()
    triples = _scored(Collection.open(DL19_MINI), 2)
    cfg = TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup_steps=0, validate_every=0, val_fraction=0.0)
    Trainer(loaded, Collection.open(DL19_MINI), triples, cfg, tmp_path).train(progress=False)
    torch.testing.assert_close(loaded.model.bert.embeddings.word_embeddings.weight, before, rtol=0, atol=0)
    assert not torch.equal(loaded.model.bert.embeddings.LayerNorm.weight, torch.ones_like(before[0]))


def test_pipeline_end_to_end_cli(tiny_base: Path, tmp_path: Path, capsys) -> None:
    """triples -> teacher -> score -> student train -> evaluate on a real DL19 slice."""
    data = str(DL19_MINI)
    lengths = ["--model-query-max-len", "16", "--model-passage-max-len", "48"]
    common = [
        "--batch-size",
        "4",
        "--warmup-steps",
        "0",
        "--checkpoint-every",
        "3",
        "--validate-every",
        "3",
        "--val-fraction",
        "0.34",
        "--val-depth",
        "20",
    ]
    assert (
        main(
            [
                "triples",
                "--data",
                data,
                "--run",
                "bm25",
                "--labelled",
                "--max-per-query",
                "16",
                "--out",
                str(tmp_path / "labelled.tsv"),
            ]
        )
        == 0
    )
    assert (
        main(["triples", "--data", data, "--run", "bm25", "--all-pairs", "--depth", "8", "--out", str(tmp_path / "pairs.tsv")])
        == 0
    )
    assert len((tmp_path / "pairs.tsv").read_text().splitlines()) == 3 * 28
    assert (
        main(
            [
                "train",
                "--arch",
                "bert_cat",
                "--init",
                str(tiny_base),
                "--data",
                data,
                "--triples",
                str(tmp_path / "labelled.tsv"),
                "--loss",
                "ranknet",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "teacher"),
                *common,
                *lengths,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path / "teacher"),
                "--model",
                str(tmp_path / "teacher"),
                "--data",
                data,
                "--triples",
                str(tmp_path / "pairs.tsv"),
                "--out",
                str(tmp_path / "scores.tsv"),
            ]
        )
        == 0
    )
    rows = [line.split("\t") for line in (tmp_path / "scores.tsv").read_text().splitlines()]
    assert len(rows) == 3 * 28 and all(len(r) == 5 for r in rows)
    assert (
        main(
            [
                "train",
                "--arch",
                "colbert",
                "--init",
                str(tiny_base),
                "--layers",
                "1",
                "--data",
                data,
                "--triples",
                str(tmp_path / "scores.tsv"),
                "--loss",
                "margin-mse",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "student"),
                *common,
                *lengths,
            ]
        )
        == 0
    )
    student = load_checkpoint(tmp_path / "student")
    manifest = json.loads((tmp_path / "student" / "manifest.json").read_text())
    assert student.config.encoder.num_layers == 1
    assert manifest["steps"] == 3 and manifest["loss"] == "margin-mse" and manifest["seed"] == 42
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "student"),
                "--data",
                data,
                "--run",
                "bm25",
                "--depth",
                "20",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["queries"] == 3 and 0.0 <= result["ndcg@10"] <= 1.0
    run_lines = (tmp_path / "eval.run").read_text().splitlines()
    assert len(run_lines) == 60

    # the validation split outside training: the same queries and figures as the trainer's last validation
    assert (
        main(
            [
                "validate",
                "--model",
                str(tmp_path / "student"),
                "--data",
                data,
                "--triples",
                str(tmp_path / "scores.tsv"),
                "--val-fraction",
                "0.34",
                "--val-depth",
                "20",
                "--json",
                str(tmp_path / "val.json"),
            ]
        )
        == 0
    )
    val = json.loads((tmp_path / "val.json").read_text())
    assert val["ndcg@10"] == pytest.approx(manifest["best_validation"]["ndcg@10"], abs=1e-6)
    assert val["validation_queries"] == manifest["validation_queries"]
    # ensemble weights picked on that split
    assert (
        main(
            [
                "ensemble",
                "--in",
                str(tmp_path / "scores.tsv"),
                "--in",
                str(tmp_path / "scores.tsv"),
                "--pick-weights",
                "0.5",
                "--data",
                data,
                "--val-fraction",
                "0.34",
                "--scale-like",
                "1",
                "--out",
                str(tmp_path / "ensemble.tsv"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "ensemble.tsv.ensemble.json").read_text())
    assert len(record["validation"]["grid"]) == 3 and record["validation"]["queries"] == 1


def test_cli_reports_bad_input_cleanly(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t2\n")
    code = main(
        [
            "train",
            "--arch",
            "colbert",
            "--init",
            "minilm",
            "--data",
            str(DL19_MINI),
            "--triples",
            str(bad),
            "--out",
            str(tmp_path / "o"),
            "--steps",
            "0",
        ]
    )
    assert code == 2
    assert "steps must be >= 1" in capsys.readouterr().err


def test_pack_leaves_out_base_embeddings_and_round_trips(tiny_base: Path, tmp_path: Path) -> None:
    """A packed student is smaller, loads back (embeddings from the base, fp16 weights) and scores alike."""
    from reranker.models.checkpoint import save_checkpoint
    from reranker.training.inference import score_pairs

    loaded = init_from_base("colbert", tiny_base, freeze_word_embeddings=True, **SMALL)
    save_checkpoint(tmp_path / "full", loaded, {"steps": 0})
    assert (
        main(["pack", "--model", str(tmp_path / "full"), "--out", str(tmp_path / "packed"), "--base", str(tiny_base), "--fp16"])
        == 0
    )
    full_size = (tmp_path / "full" / "model.safetensors").stat().st_size
    packed_size = (tmp_path / "packed" / "model.safetensors").stat().st_size
    emb_bytes = loaded.model.bert.embeddings.word_embeddings.weight.numel() * 4
    assert packed_size < (full_size - emb_bytes) / 2 + 4096
    manifest = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    assert (
        manifest["weights_dtype"] == "float16" and "bert.embeddings.word_embeddings.weight" in manifest["base_tensors"]["tensors"]
    )
    packed = load_checkpoint(tmp_path / "packed")
    torch.testing.assert_close(
        packed.model.bert.embeddings.word_embeddings.weight, loaded.model.bert.embeddings.word_embeddings.weight, rtol=0, atol=0
    )
    queries, passages = ["what is a flea"] * 2, ["fleas are insects", "a flea lives for a year or so"]
    np_full = score_pairs(loaded, queries, passages)
    np_packed = score_pairs(packed, queries, passages)
    assert abs(np_full - np_packed).max() < 1e-2


def test_pack_refuses_trained_embeddings_and_other_base(tiny_base: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from reranker.errors import ArtifactError
    from reranker.models.checkpoint import save_checkpoint

    loaded = init_from_base("tk", tiny_base, **SMALL)
    original = loaded.model.word_embeddings.weight.detach().clone()
    with torch.no_grad():
        loaded.model.word_embeddings.weight[5] += 1.0
    with pytest.raises(ConfigError, match="differs from the base model"):
        save_checkpoint(tmp_path / "x", loaded, {}, base=str(tiny_base))
    with torch.no_grad():
        loaded.model.word_embeddings.weight.copy_(original)
    save_checkpoint(tmp_path / "ok", loaded, {}, base=str(tiny_base))
    other = tmp_path / "other-base"
    other.mkdir()
    (other / "config.json").write_text((tiny_base / "config.json").read_text())
    weights = load_file(str(tiny_base / "model.safetensors"))
    weights["bert.embeddings.word_embeddings.weight"] = weights["bert.embeddings.word_embeddings.weight"] * 2
    save_file(weights, str(other / "model.safetensors"))
    manifest_path = tmp_path / "ok" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["base_tensors"]["base"] = str(other)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="different base model"):
        load_checkpoint(tmp_path / "ok")
