"""ONNX export parity, the passage store, and the ONNX Runtime scorer (tiny random models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from reranker.arch import spec  # noqa: E402
from reranker.artifact import Artifact  # noqa: E402
from reranker.config import ARCHES  # noqa: E402
from reranker.data import DataFolder  # noqa: E402
from reranker.engine import BatcherConfig, Limits, LocalEngine, RuntimeConfig, passage_encoder  # noqa: E402
from reranker.engine.prepare import Windowing  # noqa: E402
from reranker.errors import ArtifactError, ConfigError, InvalidInputError, NotFoundError  # noqa: E402
from reranker.models.checkpoint import load_checkpoint  # noqa: E402
from reranker.store import PassageStore  # noqa: E402
from reranker.store.build import build_store  # noqa: E402
from reranker.tokenization import Preprocessor  # noqa: E402
from reranker.training.inference import score_pairs, to_tokens  # noqa: E402
from reranker_export.onnx_export import export_model  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402

SPLIT = [a for a in ARCHES if spec(a).split]
CPU = RuntimeConfig(provider="cpu")
BUDGET = BatcherConfig(max_batch_size=4, max_batch_cost=200, max_wait_s=0.0)


def encoder(art: Artifact):
    return passage_encoder(art, CPU, BUDGET)


def rerank(
    art: Artifact | Path,
    query: str,
    ids: list[str],
    texts: list[str] | None = None,
    store: Path | str = "",
    aggregate: str = "first",
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and truncation flags in input order, through the engine's request path (long texts cut
    at the model's passage length unless ``aggregate`` names a windowed one)."""
    directory = art.directory if isinstance(art, Artifact) else art
    with LocalEngine.of(str(directory), str(store), runtime=CPU, batching=BUDGET, warmup=False) as engine:
        scores, truncated = engine.scores(query, ids, texts, aggregate=aggregate)
    return np.array(scores, dtype=np.float32), np.array(truncated, dtype=bool)


@pytest.fixture(scope="module")
def folder() -> DataFolder:
    return DataFolder.open(DL19_MINI)


@pytest.fixture(scope="module")
def exported(tiny_exports) -> dict[str, tuple[Path, Path]]:
    return tiny_exports


def _candidates(folder: DataFolder, n: int = 9) -> tuple[str, list[str], list[str]]:
    qid = sorted(folder.queries)[0]
    pids = [pid for pid, _ in folder.run("bm25")[qid][:n]]
    return folder.queries[qid], pids, [folder.passages[p] for p in pids]


@pytest.mark.parametrize("arch", ARCHES)
def test_export_manifest_and_parity(exported, arch: str) -> None:
    manifest = json.loads((exported[arch][1] / "manifest.json").read_text())
    assert manifest["arch"] == arch and manifest["precision"] == "fp32" and manifest["opset"] == 17
    graphs = list(spec(arch).graphs)
    assert manifest["graphs"] == graphs
    assert set(manifest["files"]) == {f"{g}.onnx" for g in graphs} | {"config.json", "tokenizer.json"}
    for key, value in manifest["parity"].items():
        if key.endswith("max_abs_diff"):
            assert value < 1e-3, key
    assert manifest["checkpoint"]["weights_sha256"]


@pytest.mark.parametrize("arch", ARCHES)
def test_onnx_scorer_matches_torch(exported, folder, arch: str) -> None:
    """Every graph together: ORT scores from text equal the PyTorch model's, at several batch sizes."""
    ckpt, art = exported[arch]
    query, pids, texts = _candidates(folder)
    got, truncated = rerank(art, query, pids, texts)
    want = score_pairs(load_checkpoint(ckpt), [query] * len(texts), texts, batch_size=3)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert truncated.dtype == bool and truncated.any()  # passages of 40 tokens at most: DL19 texts get cut


@pytest.mark.parametrize("arch", ARCHES)
def test_long_texts_scored_by_windows_match_torch(exported, folder, arch: str) -> None:
    """Chunk and aggregate: every window of a long text scored as PyTorch scores it, the max (and the
    mean of the first and the best) taken; the windows overlap by half and the last ends with the text."""
    ckpt, art = exported[arch]
    query, pids, texts = _candidates(folder, 5)
    loaded = load_checkpoint(ckpt)
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    windowing = Windowing.of(Limits(), prep.passage_token_limit)
    want_max, want_first_max, counts = [], [], []
    for text in texts:
        pieces = loaded.tokenizer.word_pieces([text])[0]
        rows = [pieces[a:b] for a, b in windowing.spans(len(pieces))]
        assert rows[-1][-1] == pieces[-1] and all(len(r) == windowing.size for r in rows)
        with torch.inference_mode():
            q = to_tokens(prep.queries([query] * len(rows)), torch.device("cpu"))
            scores = loaded.model.eval().score(q, to_tokens(prep.passage_pieces(rows), torch.device("cpu"))).numpy()
        want_max.append(scores.max())
        want_first_max.append((scores[0] + scores.max()) / 2)
        counts.append(len(rows))
    assert max(counts) > 2  # DL19 passages are several windows of a tiny model's 40 tokens
    with LocalEngine.of(str(art), runtime=CPU, batching=BUDGET, warmup=False) as engine:
        out = engine.rerank(query, pids, texts, aggregate="max")
        first_max, _ = engine.scores(query, pids, texts, aggregate="first-max")
    got = {r.index: r for r in out.results}
    np.testing.assert_allclose([got[i].score for i in range(5)], want_max, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(first_max, want_first_max, atol=1e-4, rtol=1e-4)
    assert [got[i].windows for i in range(5)] == counts and not any(r.truncated for r in out.results)
    assert out.stats["windows"] == sum(counts)


@pytest.mark.parametrize("arch", SPLIT)
def test_store_scores_equal_text_scores(exported, folder, tmp_path: Path, arch: str) -> None:
    art = Artifact.open(exported[arch][1])
    query, pids, texts = _candidates(folder)
    manifest = build_store(
        art,
        {p: folder.passages[p] for p in pids},
        tmp_path / "store",
        dtype="float32",
        chunk=4,
        encode=encoder(art),
        progress=False,
    )
    assert manifest["passages"] == len(pids) and manifest["bytes_per_token"] == 4 * manifest["dim"]
    store = PassageStore.open(tmp_path / "store", art, verify_vectors=True)
    assert isinstance(store.vectors, np.memmap)
    from_text, trunc_text = rerank(art, query, pids, texts)
    from_store, trunc_store = rerank(art, query, pids, store=tmp_path / "store")
    np.testing.assert_allclose(from_store, from_text, atol=1e-5, rtol=1e-5)
    assert (trunc_store == trunc_text).all()


def test_store_round_trip_fp16_and_lookup(exported, folder, tmp_path: Path) -> None:
    art = Artifact.open(exported["colbert"][1])
    pids = sorted(folder.passages)[:10]
    passages = {p: folder.passages[p] for p in pids}
    build_store(art, passages, tmp_path / "s", chunk=3, encode=encoder(art), progress=False)
    store = PassageStore.open(tmp_path / "s", art)
    assert len(store) == 10 and store.dtype == np.float16 and pids[3] in store and "nope" not in store
    direct, _ = encoder(art)([passages[pids[3]]])[0]
    np.testing.assert_allclose(store.get(pids[3]).astype(np.float32), direct, atol=2e-3)
    assert store.manifest["tokens"] == int(store.offsets[-1])
    assert not (tmp_path / "s.partial").exists()


def test_index_cli_can_keep_only_a_runs_top_candidates(exported, folder, tmp_path: Path) -> None:
    from reranker.cli import main

    assert (
        main(
            [
                "index",
                "--artifact",
                str(exported["bert_dot"][1]),
                "--data",
                str(DL19_MINI),
                "--run",
                "bm25",
                "--depth",
                "2",
                "--out",
                str(tmp_path / "s"),
                "--provider",
                "cpu",
            ]
        )
        == 0
    )
    store = PassageStore.open(tmp_path / "s", Artifact.open(exported["bert_dot"][1]))
    top2 = {pid for cands in folder.run("bm25").values() for pid, _ in cands[:2]}
    assert len(store) == len(top2) and all(pid in store for pid in top2)


def test_interrupted_store_build_continues(exported, folder, tmp_path: Path, monkeypatch) -> None:
    art = Artifact.open(exported["tk"][1])
    passages = {p: folder.passages[p] for p in sorted(folder.passages)[:12]}
    encode = encoder(art)
    build_store(art, passages, tmp_path / "whole", chunk=5, encode=encode, progress=False)
    calls = {"n": 0}

    def crash_on_second_chunk(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return encode(texts)

    with pytest.raises(KeyboardInterrupt):
        build_store(art, passages, tmp_path / "resumed", chunk=5, encode=crash_on_second_chunk, progress=False)
    assert not (tmp_path / "resumed").exists()
    with pytest.raises(ArtifactError, match=r"no manifest\.json|does not exist"):
        PassageStore.open(tmp_path / "resumed.partial", art)
    calls["n"] = 10
    build_store(art, passages, tmp_path / "resumed", chunk=5, encode=crash_on_second_chunk, progress=False)
    a = (tmp_path / "whole" / "vectors.bin").read_bytes()
    b = (tmp_path / "resumed" / "vectors.bin").read_bytes()
    assert a == b


def test_store_for_another_artifact_is_refused(exported, folder, tmp_path: Path) -> None:
    colbert, tk = Artifact.open(exported["colbert"][1]), Artifact.open(exported["tk"][1])
    build_store(
        colbert,
        {p: folder.passages[p] for p in sorted(folder.passages)[:3]},
        tmp_path / "s",
        encode=encoder(colbert),
        progress=False,
    )
    with pytest.raises(ArtifactError, match="built for another artifact"):
        PassageStore.open(tmp_path / "s", tk)


def test_truncated_store_and_corrupted_graph_are_detected(exported, folder, tmp_path: Path) -> None:
    import shutil

    art_dir = tmp_path / "art"
    shutil.copytree(exported["colbert"][1], art_dir)
    art = Artifact.open(art_dir)
    build_store(
        art, {p: folder.passages[p] for p in sorted(folder.passages)[:3]}, tmp_path / "s", encode=encoder(art), progress=False
    )
    with open(tmp_path / "s" / "vectors.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ArtifactError, match=r"vectors\.bin is 100 bytes.*truncated"):
        PassageStore.open(tmp_path / "s", art)
    graph = art_dir / "scorer.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"scorer\.onnx does not match its sha256"):
        Artifact.open(art_dir)


def test_unknown_ids_without_text_are_named(exported, folder) -> None:
    with pytest.raises(NotFoundError, match=r"2 candidate\(s\).*'x1', 'x2'"):
        rerank(exported["bert_dot"][1], "a query", ["x1", "ok", "x2"], ["", "some text", ""])


def test_long_query_is_refused_not_truncated(exported) -> None:
    with pytest.raises(InvalidInputError, match=r"at most 10.*never truncated"):
        rerank(exported["colbert"][1], "what is the lifespan of a flea and how long do fleas live", ["p"], ["text"])


def test_int8_export_reports_parity(exported, tmp_path: Path) -> None:
    manifest = export_model(exported["colbert"][0], tmp_path / "int8", precision="int8")
    assert manifest["precision"] == "int8" and manifest["parity"]["tolerance"] is None
    assert 0 < manifest["parity"]["scores_max_abs_diff"] < 0.5
    assert (tmp_path / "int8" / "scorer.onnx").stat().st_size > 0


def test_int8_can_keep_named_nodes_in_fp32(exported, tmp_path: Path) -> None:
    import onnx

    ckpt = exported["bert_cat"][0]
    manifest = export_model(ckpt, tmp_path / "q", precision="int8", int8_exclude=r"layer\.0/output/dense")
    assert manifest["int8_exclude"] == r"layer\.0/output/dense"
    graph = onnx.load(str(tmp_path / "q" / "cross_encoder.onnx")).graph
    kept = [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name]
    assert len(kept) == 1 and kept[0].endswith("layer.0/output/dense/MatMul")  # that one stayed a float MatMul
    assert any(n.op_type == "MatMulInteger" for n in graph.node)  # the rest is int8
    with pytest.raises(ConfigError, match="matches no"):
        export_model(ckpt, tmp_path / "r", precision="int8", int8_exclude="no-such-node")


def test_cosine_bert_dot_exports_normalised_passage_vectors(tiny_base: Path, folder, tmp_path: Path) -> None:
    """--model-dot-normalize reaches the ONNX graphs: scores are cosines (|s| <= 1) and match torch."""
    from reranker.models.checkpoint import init_from_base, save_checkpoint

    torch.manual_seed(0)
    loaded = init_from_base("bert_dot", tiny_base, query_max_len=12, passage_max_len=40, dot_normalize=True)
    save_checkpoint(tmp_path / "ckpt", loaded, {"steps": 0})
    export_model(tmp_path / "ckpt", tmp_path / "onnx")
    query, pids, texts = _candidates(folder)
    got, _ = rerank(tmp_path / "onnx", query, pids, texts)
    want = score_pairs(load_checkpoint(tmp_path / "ckpt"), [query] * len(texts), texts, batch_size=4)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert np.abs(got).max() <= 1.0 + 1e-5


def test_runtime_config_and_provider_errors() -> None:
    with pytest.raises(ConfigError, match="intra_op_threads=-1"):
        RuntimeConfig(intra_op_threads=-1)
    with pytest.raises(ConfigError, match="max_batch_size=0"):
        BatcherConfig(max_batch_size=0)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        from reranker.runtime.sessions import requested_providers

        with pytest.raises(ConfigError, match="install reranker\\[gpu\\]"):
            requested_providers(RuntimeConfig(provider="cuda"))


def test_serving_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import reranker.runtime, reranker.store, reranker.artifact, reranker.data, reranker.engine, "
        "reranker.server.app, reranker.provision, reranker.kit, reranker.fusion; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_texts_without_word_pieces(exported) -> None:
    """Found by the fuzzer: TK (no special tokens) got an empty row for a text of control characters."""
    scores, _ = rerank(exported["tk"][1], "what is a flea", ["a", "b"], ["\x00\x01", "fleas are insects"])
    assert np.isfinite(scores).all()
    with pytest.raises(InvalidInputError, match="no word pieces"):
        rerank(exported["tk"][1], "\x00\u200b", ["b"], ["fleas are insects"])


def test_default_export_is_rebuilt_when_the_shipped_default_changes(exported, tmp_path: Path, monkeypatch) -> None:
    import shutil

    from reranker import provision as default

    ckpt_a, onnx_a = exported["colbert"]
    ckpt_b, _ = exported["bert_dot"]
    shutil.copytree(onnx_a, tmp_path / "default" / "onnx-fp32")
    monkeypatch.setenv("RERANKER_HOME", str(tmp_path))
    calls: list[list[str]] = []

    def fake_run(args: list[str]) -> None:
        calls.append(args)
        raise RuntimeError("export requested")

    monkeypatch.setattr(default, "_run", fake_run)
    monkeypatch.setattr(default, "DEFAULT_MODEL_DIR", ckpt_a)  # the cached export is of this one: reused
    artifact_dir, store_dir = default.ensure_default(DL19_MINI)
    assert calls == [] and PassageStore.open(store_dir, Artifact.open(artifact_dir))
    codec = PassageStore.open(store_dir).manifest["codec"]
    assert (codec["name"], codec["nbits"]) == ("residual", 1)  # ColBERT's store codec
    monkeypatch.setattr(default, "DEFAULT_MODEL_DIR", ckpt_b)  # a new default ships: export again
    with pytest.raises(RuntimeError, match="export requested"):
        default.ensure_default(DL19_MINI)
    assert calls[0][:3] == ["export", "--model", str(ckpt_b)]


def test_one_request_path_reports_measured_times(exported, folder) -> None:
    """LocalEngine runs Engine.rerank (pre stage, batcher, core stage); inference time is measured, not inferred."""
    query, pids, texts = _candidates(folder)
    with LocalEngine.of(str(exported["bert_cat"][1]), runtime=CPU, batching=BUDGET) as engine:
        out = engine.rerank(query, pids, texts, top_k=3)
        everything = engine.rerank(query, pids, texts)
        (described,) = engine.engine.describe()
    assert [r.index for r in out.results] == [r.index for r in everything.results][:3]
    assert 0 < out.inference_ms <= out.total_ms and 0 <= out.queue_ms <= out.total_ms
    assert out.stats["candidates"] == len(pids) and out.stats["truncated"] == sum(r.truncated for r in everything.results)
    assert (described.arch, described.store_passages, described.max_query_tokens, described.max_passage_tokens) == (
        "bert_cat",
        0,
        10,
        38,
    )
    assert described.score_kind == spec("bert_cat").score_kind
