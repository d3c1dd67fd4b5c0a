"""The score cache: keys, LRU by bytes, and the engine answering a repeated request from it without
the pre stage or the batcher (same answer), and never across queries, candidates, models or texts."""

from __future__ import annotations

import pytest

from reranker.engine.cache import Cached, ScoreCache

pytest.importorskip("onnxruntime")


def test_keys_lru_by_bytes_and_dropping_a_model() -> None:
    cache = ScoreCache(10_000)
    stored = {"p1"}.__contains__
    keys = cache.keys("m", "art", "what is a flea", ["p1", "p2", "p2"], ["ignored", "a flea", "two fleas"], stored)
    assert keys[0][3] == "ip1" and keys[1][3].startswith("t") and keys[1] != keys[2]  # text decides off the store
    assert cache.keys("m", "art", "what is a flea", ["p1"], ["other text"], stored) == keys[:1]  # stored: id decides
    assert cache.keys("m", "art", "another query", ["p1"], [""], stored) != keys[:1]
    assert cache.keys("m", "other-artifact", "what is a flea", ["p1"], [""], stored) != keys[:1]
    assert cache.get_all(keys) is None
    cache.put_all(keys[:2], [Cached(1.0, False, True), Cached(2.0, True, False)])
    assert cache.get_all(keys) is None  # one missing: nothing
    assert cache.get_all(keys[:2]) == [Cached(1.0, False, True), Cached(2.0, True, False)]
    per_entry = cache.nbytes / 2
    small = ScoreCache(int(per_entry * 2.5))
    many = [("m", "art", bytes(16), f"i{i}") for i in range(3)]
    small.put_all(many[:2], [Cached(0.0, False, True)] * 2)
    small.get_all(many[:1])  # the first is now the most recently used
    small.put_all(many[2:], [Cached(0.0, False, True)])
    assert small.get_all(many[1:2]) is None and small.get_all([many[0], many[2]]) is not None  # LRU went
    assert small.nbytes <= small.max_bytes
    cache.drop_model("m")
    assert len(cache) == 0 and cache.nbytes == 0
    off = ScoreCache(0)
    off.put_all(keys[:1], [Cached(1.0, False, True)])
    assert not off.enabled and off.get_all(keys[:1]) is None


class Counting:
    """A StatsSink that counts batches and cache results."""

    def __init__(self) -> None:
        self.batches = 0
        self.hits = self.misses = 0

    def batch(self, model, stats) -> None:
        self.batches += 1

    def cache(self, model, hits, misses, nbytes) -> None:
        self.hits += hits
        self.misses += misses

    def __getattr__(self, name):  # every other statistic is ignored
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("cache_mb", [64.0, 0.0])
def test_a_repeated_request_is_answered_from_the_cache(tiny_exports, cache_mb, tmp_path) -> None:
    from reranker.data import DataFolder
    from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig

    from .conftest import DL19_MINI

    folder = DataFolder.open(DL19_MINI)
    qid, other_qid = sorted(folder.queries, key=lambda q: len(folder.queries[q]))[:2]  # within the tiny model's limit
    query = folder.queries[qid]
    pids = [p for p, _ in folder.run("bm25")[qid][:6]]
    texts = [folder.passages[p] for p in pids]
    sink = Counting()
    spec = ModelSpec("teacher", str(tiny_exports["bert_cat"][1]))
    cfg = EngineConfig(models=(spec,), runtime=RuntimeConfig(provider="cpu", intra_op_threads=1), warmup=False, cache_mb=cache_mb)
    with LocalEngine(cfg, sink) as engine:  # type: ignore[arg-type]
        first = engine.rerank(query, pids, texts)
        batches = sink.batches
        again = engine.rerank(query, pids, texts, top_k=3)
        assert [(r.id, r.score, r.truncated) for r in again.results] == [(r.id, r.score, r.truncated) for r in first.results[:3]]
        if cache_mb:
            assert sink.batches == batches and sink.hits == len(pids)  # no batch ran
        else:
            assert sink.batches > batches and sink.hits == 0
        changed = engine.rerank(query, pids, [*texts[:-1], texts[-1] + " changed"])  # one new candidate: all scored
        other = engine.rerank(folder.queries[other_qid], pids, texts)
        assert sink.hits == (len(pids) if cache_mb else 0)
        assert {r.id: r.score for r in changed.results}[pids[0]] == pytest.approx(
            {r.id: r.score for r in first.results}[pids[0]], abs=1e-6
        )
        assert {r.id: r.score for r in other.results} != {r.id: r.score for r in first.results}


def test_warm_up_runs_every_graph_even_with_the_request_cached(tiny_exports) -> None:
    from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig
    from reranker.engine.engine import WARMUP

    spec = ModelSpec("teacher", str(tiny_exports["bert_cat"][1]))
    cfg = EngineConfig(models=(spec,), runtime=RuntimeConfig(provider="cpu", intra_op_threads=1), warmup=False)
    with LocalEngine(cfg) as engine:
        engine.rerank(WARMUP[0], [""], [WARMUP[1]])  # the warm-up request, now cached
        model = engine.engine.models["teacher"]
        calls: list[int] = []
        real = model.batcher.submit

        async def counting(pairs, **kwargs):
            calls.append(len(pairs))
            return await real(pairs, **kwargs)

        model.batcher.submit = counting  # type: ignore[method-assign]
        engine._call(engine.engine.warm_up())
        assert calls == [1]  # the warm-up request went through the batcher
        assert len(engine.engine.cache) == 1  # and the cache is the one it was


def test_long_texts_are_not_hashed(tiny_exports) -> None:
    from reranker.engine import EngineConfig, LocalEngine, ModelSpec, RuntimeConfig
    from reranker.engine.engine import CACHED_TEXT

    spec = ModelSpec("teacher", str(tiny_exports["bert_cat"][1]))
    cfg = EngineConfig(models=(spec,), runtime=RuntimeConfig(provider="cpu", intra_op_threads=1), warmup=False)
    with LocalEngine(cfg) as engine:
        cap = engine.engine.models["teacher"].limits.max_passage_chars  # texts are cut to it first
        n = CACHED_TEXT // cap + 1
        engine.rerank("flea", [f"p{i}" for i in range(n)], ["flea " * (cap // 5)] * n)
        assert len(engine.engine.cache) == 0
        engine.rerank("flea", ["a"], ["a flea"])
        assert len(engine.engine.cache) == 1
