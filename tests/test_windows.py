"""Long candidate texts scored in windows (chunk and aggregate): limits, the request's window budget,
the cache, the admission estimate and bad configuration (tiny random models, the engine in process)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from reranker.data import DataFolder
from reranker.engine import BatcherConfig, EngineConfig, Limits, LocalEngine, ModelSpec, RuntimeConfig
from reranker.engine.prepare import Windowing
from reranker.errors import ConfigError, InvalidInputError

from .conftest import DL19_MINI

CPU = RuntimeConfig(provider="cpu", intra_op_threads=1)
BUDGET = BatcherConfig(max_batch_size=8, max_batch_cost=400, max_wait_s=0.0)


def engine_of(artifact: Path, cache_mb: float = 0, **limits: object) -> LocalEngine:
    spec = ModelSpec("m", str(artifact), limits=Limits(**limits))  # type: ignore[arg-type]
    return LocalEngine(EngineConfig(models=(spec,), runtime=CPU, batching=BUDGET, warmup=False, cache_mb=cache_mb))


@pytest.fixture(scope="module")
def long_request() -> tuple[str, list[str], list[str]]:
    """A query and four texts of several windows each (a tiny model reads 38 word pieces)."""
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    pids = [pid for pid, _ in folder.run("bm25")[qid][:8]]
    texts = [" ".join(folder.passages[p] for p in pids[i : i + 2]) for i in range(0, 8, 2)]
    return folder.queries[qid], [f"d{i}" for i in range(4)], texts


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"window_tokens": 0}, "window_tokens must be a whole number of word pieces >= 1"),
        ({"window_stride": 0}, "window_stride must be a whole number of word pieces >= 1"),
        ({"window_tokens": 10, "window_stride": 11}, "would leave text between windows unread"),
        ({"window_tokens": 2.5}, "window_tokens must be a whole number"),
        ({"max_windows_per_candidate": 0}, "max_windows_per_candidate must be >= 1"),
        ({"max_windows_per_request": 0}, "max_windows_per_request must be >= 1"),
        ({"aggregate": "mean"}, "aggregate must be one of max, first-max, first"),
    ],
)
def test_bad_window_limits_are_refused(limits: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Limits(**limits)  # type: ignore[arg-type]


def test_a_window_longer_than_the_model_reads_is_refused_at_open(tiny_exports) -> None:
    with pytest.raises(ConfigError, match=r"window_tokens 39 is longer than this bert_cat model reads .*38 word pieces"):
        engine_of(tiny_exports["bert_cat"][1], window_tokens=39)


def test_window_starts_cover_every_piece_and_overlap() -> None:
    w = Windowing(size=10, stride=4, per_candidate=100, per_request=1000, limit=12)
    for n in (0, 1, 10, 12, 13, 14, 15, 33):
        spans = w.spans(n)
        starts = [a for a, _ in spans]
        covered = set().union(*(range(a, b) for a, b in spans))
        assert covered == set(range(n)) and starts[0] == 0 and starts == sorted(set(starts))
        if n <= 12:  # the model reads it at once: one window, as a store build reads it
            assert spans == [(0, n)]
        else:  # windows of 10, the last one ending with the text, never a short one
            assert all(b - a == 10 for a, b in spans) and spans[-1][1] == n
        assert all(b - a <= 4 for a, b in itertools.pairwise(starts))
    assert w.spans(33, granted=2) == [(0, 10), (4, 14)] and w.spans(33, granted=1) == [(0, 12)]
    assert w.allot([3, 3, 3]) == [3, 3, 3] and Windowing(10, 4, 2, 1000).allot([3, 1]) == [2, 1]
    assert Windowing(10, 4, 8, 2).allot([5, 5, 5]) == [1, 1, 1]  # fewer windows than candidates: one each


@pytest.mark.parametrize("arch", ["bert_cat", "colbert"])
def test_the_request_budget_cuts_later_candidates_first(tiny_exports, long_request, arch: str) -> None:
    query, ids, texts = long_request
    art = tiny_exports[arch][1]
    with engine_of(art) as full, engine_of(art, max_windows_per_request=7) as capped:
        whole = {r.index: r for r in full.rerank(query, ids, texts).results}
        cut = {r.index: r for r in capped.rerank(query, ids, texts).results}
        first, _ = full.scores(query, ids, texts, aggregate="first")
    assert all(whole[i].windows > 3 and not whole[i].truncated for i in range(4))
    granted = [cut[i].windows for i in range(4)]
    assert sum(granted) == 7 and granted[0] == 4 and granted[-1] == 1  # three spare windows, in request order
    assert all(cut[i].truncated == (granted[i] < whole[i].windows) for i in range(4)) and cut[3].truncated
    np.testing.assert_allclose(cut[3].score, first[3], rtol=1e-5)  # its first window only


def test_a_text_the_model_reads_at_once_is_one_window_whatever_the_window_size(tiny_exports) -> None:
    """Smaller windows than the passage length split only texts longer than it: a text the model reads
    whole scores as it does from a store (and as with aggregate 'first')."""
    art = tiny_exports["colbert"][1]
    text = "fleas live for about a year and lay eggs on the host animal"
    with engine_of(art, window_tokens=4, window_stride=2) as small, engine_of(art) as model:
        got = small.rerank("how long do fleas live", ["d"], [text]).results[0]
        want, _ = model.scores("how long do fleas live", ["d"], [text], aggregate="first")
    assert got.windows == 1 and not got.truncated and got.score == pytest.approx(want[0], rel=1e-5)


def test_one_window_per_candidate_is_truncation(tiny_exports, long_request) -> None:
    query, ids, texts = long_request
    art = tiny_exports["colbert"][1]
    with engine_of(art, max_windows_per_candidate=1, window_tokens=38) as one, engine_of(art) as model:
        got = one.rerank(query, ids, texts)
        want, truncated = model.scores(query, ids, texts, aggregate="first")
    assert all(r.windows == 1 and r.truncated for r in got.results) and all(truncated)
    np.testing.assert_allclose([r.score for r in sorted(got.results, key=lambda r: r.index)], want, rtol=1e-5)


def test_windows_are_cached_per_aggregate(tiny_exports, long_request) -> None:
    query, ids, texts = long_request
    with engine_of(tiny_exports["bert_cat"][1], cache_mb=1) as engine:
        scored = engine.rerank(query, ids, texts)
        again = engine.rerank(query, ids, texts)
        cut = engine.rerank(query, ids, texts, aggregate="first")
    assert again.inference_ms == 0 and scored.inference_ms > 0  # the second answer came from the cache
    assert [(r.index, r.score, r.windows) for r in again.results] == [(r.index, r.score, r.windows) for r in scored.results]
    assert cut.inference_ms > 0 and all(r.windows == 1 and r.truncated for r in cut.results)


def test_an_unknown_aggregate_is_refused_with_the_allowed_ones(tiny_exports, long_request) -> None:
    query, ids, texts = long_request
    with engine_of(tiny_exports["bert_cat"][1]) as engine, pytest.raises(InvalidInputError, match="first-max"):
        engine.rerank(query, ids, texts, aggregate="sum")


def test_the_admission_estimate_follows_the_windows(tiny_exports, long_request) -> None:
    """Estimated from characters, learnt from the texts tokenised: near the windows really scored."""
    query, ids, texts = long_request
    with engine_of(tiny_exports["colbert"][1]) as engine:
        prepare = engine.engine.models["m"].prepare
        for _ in range(20):  # the running word pieces per character settle
            out = engine.rerank(query, ids, texts)
        pairs, encodes = prepare.estimate(ids, texts, "max")
        assert pairs == encodes and abs(pairs - out.stats["windows"]) <= 2
        assert prepare.estimate(ids, texts, "first") == (4, 4)
