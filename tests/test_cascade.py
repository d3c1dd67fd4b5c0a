"""The deadline-aware cascade in process (tiny random models): which tier scores and why, pinning, no
fallback, a tier running late, bad configuration and bad requests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("onnxruntime")

from reranker.engine import (
    FIRST_STAGE_TIER,
    BatcherConfig,
    CascadeSpec,
    EngineConfig,
    LocalEngine,
    ModelSpec,
    RerankInput,
    RuntimeConfig,
)
from reranker.errors import CapacityError, ConfigError, DeadlineError, InvalidInputError

from .conftest import copy_with_config

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)
IDS = ["a", "b", "c"]
TEXTS = ["fleas live for a year", "a mcdouble has one slice of cheese", "the cat sat"]
FIRST = [1.0, 3.0, 2.0]


def config(tiny_exports, *cascades: CascadeSpec) -> EngineConfig:
    models = (ModelSpec("slow", str(tiny_exports["bert_cat"][1])), ModelSpec("fast", str(tiny_exports["colbert"][1])))
    return EngineConfig(
        models=models,
        runtime=CPU,
        batching=BatcherConfig(max_wait_s=0.0),
        cache_mb=0,
        cascades=cascades or (CascadeSpec("auto", ("slow", "fast", FIRST_STAGE_TIER)),),
    )


@pytest.fixture()
def engine(tiny_exports) -> Iterator[LocalEngine]:
    with LocalEngine(config(tiny_exports)) as local:
        yield local


def ask(local: LocalEngine, deadline_s: float | None = None, **fields: object):
    req = RerankInput("how long do fleas live", IDS, TEXTS, model="auto", first_stage=FIRST, **fields)  # type: ignore[arg-type]
    deadline = time.monotonic() + deadline_s if deadline_s is not None else None
    return local._call(local.engine.rerank(req, deadline=deadline))


@pytest.mark.parametrize(
    ("tiers", "words"),
    [
        (("slow", "nope"), r"unknown tier\(s\) \['nope'\]"),
        ((FIRST_STAGE_TIER, "slow"), "can only be the last tier"),
        (("slow", "slow"), "without repeats"),
        ((), "non-empty"),
        ((FIRST_STAGE_TIER,), "at least one tier must be a served model"),
    ],
)
def test_bad_cascades_are_refused(tiny_exports, tiers: tuple[str, ...], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config(tiny_exports, CascadeSpec("auto", tiers))


def test_a_cascade_may_not_take_a_model_name(tiny_exports) -> None:
    with pytest.raises(ConfigError, match="unique together"):
        config(tiny_exports, CascadeSpec("fast", ("slow",)))


def test_without_pressure_the_best_tier_scores(engine) -> None:
    out = ask(engine)
    assert out.scored_by == "slow" and out.model == "auto" and "slow: estimated to answer in time" in out.reason
    want = engine.rerank("how long do fleas live", IDS, TEXTS, model="slow")
    assert [(r.index, r.score) for r in out.results] == [(r.index, r.score) for r in want.results]


def test_a_tier_that_would_answer_late_is_passed_over(engine) -> None:
    engine.engine.models["slow"].costs.pair_s = 10.0  # 30 s for three pairs: never in time
    out = ask(engine, deadline_s=5.0)
    assert out.scored_by == "fast" and out.reason.startswith("slow would answer in about 30000 ms")
    engine.engine.models["fast"].costs.pair_s = 10.0
    out = ask(engine, deadline_s=5.0)
    assert out.scored_by == FIRST_STAGE_TIER and [r.id for r in out.results] == ["b", "c", "a"]  # by first-stage score
    assert "fast would answer in about" in out.reason and out.stats["windows"] == 0
    no_scores = RerankInput("q", IDS, TEXTS, model="auto")
    plain = engine._call(engine.engine.rerank(no_scores, deadline=time.monotonic() + 5))
    assert [r.id for r in plain.results] == IDS  # no first-stage scores: the order they came in
    assert ask(engine).scored_by == "slow"  # without a deadline the first tier always scores


def test_a_pinned_tier_scores_whatever_the_estimate(engine) -> None:
    engine.engine.models["slow"].costs.pair_s = 10.0
    assert ask(engine, deadline_s=5.0, tier="slow").scored_by == "slow"  # estimated 30 s, ran in milliseconds
    pinned = ask(engine, tier=FIRST_STAGE_TIER, top_k=2)
    assert pinned.scored_by == FIRST_STAGE_TIER and [r.id for r in pinned.results] == ["b", "c"]
    with pytest.raises(InvalidInputError, match="tier 'teacher' is not one of cascade auto's tiers: slow, fast, first-stage"):
        ask(engine, tier="teacher")


def test_no_fallback_keeps_the_first_tier(engine) -> None:
    engine.engine.models["slow"].costs.pair_s = 10.0
    assert ask(engine, deadline_s=5.0, no_fallback=True).scored_by == "slow"
    with pytest.raises((DeadlineError, CapacityError)):
        ask(engine, deadline_s=0.0001, no_fallback=True)


def test_a_tier_still_running_near_the_deadline_gives_way_to_the_first_stage(engine) -> None:
    slow = engine.engine.models["slow"]
    run_batch = slow.run_batch

    def stalled(pairs):
        time.sleep(0.6)
        return run_batch(pairs)

    slow.run_batch = stalled  # type: ignore[method-assign]
    slow.batcher._run_batch = stalled  # the batcher holds the bound method
    started = time.monotonic()
    out = ask(engine, deadline_s=0.3)
    took = time.monotonic() - started
    assert out.scored_by == FIRST_STAGE_TIER and took < 0.3, (out.reason, took)
    assert out.reason.startswith("slow was still running 35 ms before the deadline")  # 20 ms and 5% of 300


def test_tier_options_on_a_model_are_refused(engine) -> None:
    with pytest.raises(InvalidInputError, match="tier and no_fallback apply to a cascade"):
        engine._call(engine.engine.rerank(RerankInput("q", IDS, TEXTS, model="fast", tier="fast")))


def test_a_cascade_request_is_validated_against_every_model_tier(engine) -> None:
    """The first-stage tier needs no model, but the request must be one every tier could serve."""
    with pytest.raises(InvalidInputError, match="query is empty"):
        engine._call(engine.engine.rerank(RerankInput(" ", IDS, TEXTS, model="auto", tier=FIRST_STAGE_TIER)))


def test_cascades_and_window_limits_from_toml(tmp_path) -> None:
    from reranker.server.config import load_config

    (tmp_path / "server.toml").write_text(
        '[[models]]\nname = "teacher"\nartifact = "t"\nwindow_tokens = 64\naggregate = "first-max"\n'
        '[[models]]\nname = "student"\nartifact = "s"\n'
        '[[cascades]]\nname = "auto"\ntiers = ["teacher", "student", "first-stage"]\nreserve_ms = 50\n'
    )
    cfg = load_config(tmp_path / "server.toml")
    assert cfg.engine.cascades == (CascadeSpec("auto", ("teacher", "student", FIRST_STAGE_TIER), 50.0),)
    assert cfg.models[0].limits.window_tokens == 64 and cfg.models[0].limits.aggregate == "first-max"
    (tmp_path / "bad.toml").write_text('[[models]]\nname = "m"\nartifact = "a"\n[[cascades]]\nname = "auto"\ntiers = ["x"]\n')
    with pytest.raises(ConfigError, match=r"cascade auto names unknown tier\(s\) \['x'\]"):
        load_config(tmp_path / "bad.toml")


def test_a_first_stage_answer_never_passes_min_relevance_unfiltered(tiny_exports, tmp_path) -> None:
    """The first stage has no relevance: with min_relevance nothing is returned, and the count says why."""
    calibration = {"method": "platt", "a": 1.0, "b": 0.0, "per_query_token": False}
    slow = copy_with_config(tiny_exports["bert_cat"][1], tmp_path / "slow", "reranker-onnx", calibration=calibration)
    models = (ModelSpec("slow", str(slow)),)
    cfg = EngineConfig(models=models, runtime=CPU, cache_mb=0, cascades=(CascadeSpec("auto", ("slow", FIRST_STAGE_TIER)),))
    with LocalEngine(cfg) as local:
        out = ask(local, tier=FIRST_STAGE_TIER, min_relevance=0.5)
        scored = ask(local, min_relevance=0.0)
    assert out.results == [] and out.stats["below_min_relevance"] == 3 and out.scored_by == FIRST_STAGE_TIER
    assert scored.scored_by == "slow" and len(scored.results) == 3


def test_first_stage_is_a_reserved_name() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        ModelSpec(FIRST_STAGE_TIER, "x")
