"""MaxSim over unpadded states: equal to the exported scorer graph, in the engine's batches too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker.runtime.maxsim import MASKED, end_to_end, maxsim

pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact
from reranker.engine import BatcherConfig, LocalEngine, RuntimeConfig, passage_encoder
from reranker.engine.loader import open_scorer
from reranker.engine.prepare import pad_rows
from reranker.store.build import build_store
from reranker.store.compress import CodecConfig

CPU = RuntimeConfig(intra_op_threads=1)


def _states(rng: np.random.Generator, lengths: list[int], dim: int = 8) -> list[np.ndarray]:
    rows = [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]
    return [r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12) for r in rows]


def test_maxsim_is_the_padded_sum_of_best_dot_products() -> None:
    rng = np.random.default_rng(0)
    q = _states(rng, [5])[0]
    passages = _states(rng, [3, 1, 7, 2])
    lengths = np.array([len(p) for p in passages])
    expected = [float((p @ q.T).max(axis=0).sum()) for p in passages]
    np.testing.assert_allclose(maxsim(q, np.concatenate(passages), lengths), expected, rtol=1e-6)
    half = maxsim(q, np.concatenate(passages).astype(np.float16), lengths)  # a float16 store's states
    np.testing.assert_allclose(half, expected, atol=1e-2)


def test_a_passage_without_positions_scores_as_the_graph_masks_it() -> None:
    rng = np.random.default_rng(1)
    q = _states(rng, [4])[0]
    p = _states(rng, [2, 3])
    got = maxsim(q, np.concatenate(p), np.array([2, 0, 3]))
    assert got[1] == pytest.approx(MASKED * 4)
    np.testing.assert_allclose(got[[0, 2]], [(x @ q.T).max(0).sum() for x in p], rtol=1e-6)
    assert maxsim(q, np.empty((0, 8), np.float32), np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    ("q", "p", "lengths"),
    [((3, 8), (5, 8), [2, 2]), ((3, 8), (5, 4), [5]), ((8,), (5, 8), [5]), ((3, 8), (5, 8), [6, -1])],
)
def test_shapes_that_do_not_fit_are_refused(q: tuple, p: tuple, lengths: list[int]) -> None:
    with pytest.raises(ValueError, match="lengths"):
        maxsim(np.zeros(q, np.float32), np.zeros(p, np.float32), np.array(lengths))


def test_slices_of_one_decode_are_used_in_place_in_any_order() -> None:
    decoded = np.arange(40, dtype=np.float32).reshape(10, 4)
    parts = np.split(decoded, [3, 4, 8])  # what PassageStore.get_many returns
    shuffled = [parts[2], parts[0], parts[3], parts[1]]
    block, order = end_to_end(shuffled)
    assert np.shares_memory(block, decoded)
    np.testing.assert_array_equal(block, np.concatenate([shuffled[i] for i in order]))
    np.testing.assert_array_equal(order, [1, 3, 0, 2])


@pytest.mark.parametrize("case", ["gap", "repeat", "separate"])
def test_states_not_end_to_end_are_copied(case: str) -> None:
    decoded = np.arange(40, dtype=np.float32).reshape(10, 4)
    parts = {
        "gap": [decoded[0:2], decoded[5:7]],
        "repeat": [decoded[0:2], decoded[0:2]],
        "separate": [decoded[0:2], decoded[2:4].copy()],
    }[case]
    block, order = end_to_end(parts)
    assert not np.shares_memory(block, decoded)
    np.testing.assert_array_equal(order, np.arange(len(parts)))
    np.testing.assert_array_equal(block, np.concatenate(parts))


@pytest.fixture(scope="module")
def colbert(tiny_exports: dict[str, tuple[Path, Path]]) -> Path:
    return tiny_exports["colbert"][1]


def test_maxsim_equals_the_exported_scorer_graph(colbert: Path) -> None:
    artifact = Artifact.open(colbert)
    encode = passage_encoder(artifact, CPU)
    scorer = open_scorer(artifact, CPU)
    texts = ["alpha beta gamma", "a much longer passage about many things " * 3, "x", "delta epsilon"]
    states = [state for state, _ in encode(texts)]
    from reranker.engine.prepare import Prepare
    from reranker.tokenization import Preprocessor

    prepare = Prepare(artifact.spec, Preprocessor(artifact.tokenizer, artifact.config), scorer, BatcherConfig())
    q = prepare.query("what about gamma").data
    graph = scorer.score(*pad_rows([q] * len(states), 0.0), *pad_rows(states, 0.0))
    flat = maxsim(q, np.concatenate(states), np.array([len(s) for s in states]))
    np.testing.assert_allclose(flat, graph, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nbits", [1, 2, 0])
def test_the_engine_scores_a_stored_request_in_one_batch_as_the_graph_does(colbert: Path, tmp_path: Path, nbits: int) -> None:
    """1 bit: from the store's codes; 2 bits: decoded, then MaxSim; 0: a float16 store (cast by ONNX
    Runtime, then MaxSim); each against the padded graph."""
    artifact = Artifact.open(colbert)
    passages = {f"p{i}": f"passage number {i} about topic {i % 7} and words {'w ' * (i % 13)}" for i in range(60)}
    store = tmp_path / "store"
    codec = CodecConfig("residual", nbits=nbits, centroids=8) if nbits else CodecConfig("float16")
    build_store(artifact, passages, store, encode=passage_encoder(artifact, CPU), codec=codec, progress=False)
    ids = list(passages)
    with LocalEngine.of(
        str(colbert), str(store), runtime=CPU, batching=BatcherConfig(max_batch_size=16), warmup=False, cache_mb=0
    ) as engine:
        model = engine.engine.models["default"]
        assert model.flat_maxsim and model.batcher.cfg.max_batch_size >= len(ids)
        assert model.prepare.from_codes == (nbits == 1)
        sizes: list[int] = []
        run = model.run_batch
        model.batcher._run_batch = lambda pairs: sizes.append(len(pairs)) or run(pairs)  # type: ignore[method-assign]
        flat = engine.rerank("topic 3 words", [*ids[:20], "text", *ids[20:]], [""] * 20 + ["topic 3 words here"] + [""] * 40)
        model.flat_maxsim = model.prepare.from_codes = False
        padded = engine.rerank("topic 3 words", [*ids[:20], "text", *ids[20:]], [""] * 20 + ["topic 3 words here"] + [""] * 40)
    assert sizes == [len(ids) + 1] * 2  # one run each
    got = {r.id: r.score for r in flat.results}
    want = {r.id: r.score for r in padded.results}
    assert got.keys() == want.keys() == {*ids, "text"}
    np.testing.assert_allclose([got[i] for i in want], list(want.values()), rtol=1e-5, atol=1e-5)


def test_dot_products_from_the_codes_equal_the_decoded_ones(colbert: Path, tmp_path: Path) -> None:
    from reranker.store import PassageStore

    artifact = Artifact.open(colbert)
    passages = {f"p{i}": f"some words {i} " * (1 + i % 5) for i in range(30)}
    build_store(
        artifact,
        passages,
        tmp_path / "s",
        encode=passage_encoder(artifact, CPU),
        codec=CodecConfig("residual", nbits=1, centroids=4),
        progress=False,
    )
    store = PassageStore.open(tmp_path / "s", artifact)
    assert store.scores_codes
    pids = ["p3", "p0", "p17"]
    rows = store.token_rows(pids)
    q = np.random.default_rng(0).standard_normal((5, store.dim)).astype(np.float32)
    decoded = np.concatenate(store.get_many(pids))
    np.testing.assert_allclose(store.dots(q, np.concatenate(rows)), decoded @ q.T, rtol=1e-5, atol=1e-5)
    assert [len(r) for r in rows] == [len(s) for s in store.get_many(pids)]


def test_an_engine_runs_numpy_blas_on_the_configured_threads(colbert: Path) -> None:
    from threadpoolctl import threadpool_info

    from reranker.errors import ConfigError

    with pytest.raises(ConfigError, match="numpy_threads"):
        RuntimeConfig(numpy_threads=-1)
    with LocalEngine.of(str(colbert), runtime=RuntimeConfig(intra_op_threads=1, numpy_threads=1), warmup=False):
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


def test_a_damaged_1bit_store_is_decoded_so_that_lookups_name_the_passages(colbert: Path, tmp_path: Path) -> None:
    import json

    from reranker.engine.prepare import Prepare
    from reranker.errors import StoreDamagedError
    from reranker.store import PassageStore
    from reranker.tokenization import Preprocessor

    artifact = Artifact.open(colbert)
    passages = {f"p{i}": f"words {i} " * 3 for i in range(20)}
    store_dir = tmp_path / "s"
    build_store(
        artifact,
        passages,
        store_dir,
        encode=passage_encoder(artifact, CPU),
        codec=CodecConfig("residual", nbits=1, centroids=4),
        progress=False,
    )
    ids = np.memmap(store_dir / "centroid_ids.bin", dtype="uint16", mode="r+")
    ids[0] = 999  # passage p0's first token: a centroid id out of range (as in a store too big to check at open)
    ids.flush()
    store = PassageStore(store_dir, json.loads((store_dir / "manifest.json").read_text()), check_ids=False)
    prepare = Prepare(
        artifact.spec, Preprocessor(artifact.tokenizer, artifact.config), open_scorer(artifact, CPU), BatcherConfig(), store
    )
    assert prepare.store is store and not prepare.from_codes  # loaded, decoded instead of scored from codes
    with pytest.raises(StoreDamagedError, match="p0"):
        prepare.passages(["p1", "p0"], ["", ""], "max")
    assert len(prepare.passages(["p1", "p2"], ["", ""], "max").items) == 2


def test_int8_query_quantises_only_the_query_encoder(tiny_exports, tmp_path: Path) -> None:
    import onnx

    from reranker.errors import ConfigError
    from reranker_export.onnx_export import export_model

    out = tmp_path / "q8"
    manifest = export_model(tiny_exports["colbert"][0], out, precision="int8-query")
    assert manifest["precision"] == "int8-query"
    fp32 = Artifact.open(tiny_exports["colbert"][1])
    assert Artifact.open(out).checksum == fp32.checksum  # the fp32 export's passage encoder: its stores serve both
    ops = {
        g: {n.op_type for n in onnx.load(str(out / f"{g}.onnx")).graph.node}
        for g in ("query_encoder", "passage_encoder", "scorer")
    }
    assert "MatMulInteger" in ops["query_encoder"] or "DynamicQuantizeLinear" in ops["query_encoder"]
    assert not {"MatMulInteger", "DynamicQuantizeLinear"} & (ops["passage_encoder"] | ops["scorer"])
    with (
        LocalEngine.of(str(out), runtime=CPU, warmup=False) as engine,
        LocalEngine.of(str(tiny_exports["colbert"][1]), runtime=CPU, warmup=False) as fp32,
    ):
        texts = ["alpha beta", "gamma delta epsilon"]
        got = [r.score for r in engine.rerank("alpha query", ["a", "b"], texts).results]
        want = [r.score for r in fp32.rerank("alpha query", ["a", "b"], texts).results]
    np.testing.assert_allclose(sorted(got), sorted(want), atol=0.2 * max(1.0, float(np.ptp(want))))
    with pytest.raises(ConfigError, match="int8-query"):
        export_model(tiny_exports["bert_cat"][0], tmp_path / "x", precision="int8-query")
