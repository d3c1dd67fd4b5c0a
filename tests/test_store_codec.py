"""Store codecs: residual compression (centroid + bits) and product quantisation, their store files, scores
through a compressed store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reranker.errors import ArtifactError, ConfigError, StoreDamagedError
from reranker.store.codec import PlainCodec, ResidualCodec, bytes_per_token, load_codec
from reranker.store.compress import CodecConfig, auto_centroids, fit_codec, fit_pq, fit_residual
from reranker.store.pq import PQCodec


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hand_made_codec_decodes_exactly() -> None:
    """Two centroids in 8 dims, 2 bits: each residual bucket decodes to its weight, bits high-first."""
    centroids = np.array([[0.0] * 8, [10.0] * 8], dtype=np.float32)
    cutoffs = np.tile(np.array([-0.5, 0.0, 0.5], dtype=np.float32), (8, 1))
    weights = np.tile(np.array([-1.0, -0.25, 0.25, 1.0], dtype=np.float32), (8, 1))
    codec = ResidualCodec(centroids, cutoffs, weights, nbits=2, normalize=False)
    x = np.array([[-0.9, -0.2, 0.2, 0.9, 0.9, 0.2, -0.2, -0.9], [10.9] * 8], dtype=np.float32)
    enc = codec.encode(x)
    assert enc["centroid_ids.bin"].ravel().tolist() == [0, 1]
    assert enc["residual_codes.bin"][0].tolist() == [0b00011011, 0b11100100]
    np.testing.assert_array_equal(codec.decode(enc), [[-1, -0.25, 0.25, 1, 1, 0.25, -0.25, -1], [11.0] * 8])
    assert bytes_per_token(codec) == 2 + 2


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_fitted_residual_codec_is_close_and_more_bits_are_closer(nbits: int) -> None:
    x = _unit(3000, 64)
    codec = fit_residual(x[:2000], centroids=32, nbits=nbits, iters=5)
    assert codec.normalize and bytes_per_token(codec) == 64 * nbits // 8 + 2
    decoded = codec.decode(codec.encode(x))
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, rtol=1e-5)
    cosine = float(np.mean(np.sum(decoded * x, axis=1)))
    assert cosine > {1: 0.75, 2: 0.9, 4: 0.97}[nbits]
    # without the residual the centroid alone is much further away
    plain = codec.centroids[codec.nearest(x)]
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)
    assert cosine > float(np.mean(np.sum(plain * x, axis=1))) + 0.1


def test_unnormalised_vectors_are_not_renormalised() -> None:
    x = _unit(500, 16) * np.random.default_rng(1).uniform(1, 5, size=(500, 1)).astype(np.float32)
    assert not fit_residual(x, centroids=8, nbits=2, iters=3).normalize


def test_codec_config_and_plain_codec_validate() -> None:
    with pytest.raises(ConfigError, match="store codec must be one of"):
        CodecConfig("zstd")
    with pytest.raises(ConfigError, match=r"bits per dimension must be one of \(1, 2, 4\)"):
        CodecConfig("residual", nbits=3)
    with pytest.raises(ConfigError, match="non-empty"):
        fit_codec(CodecConfig("residual"), np.zeros((0, 4), np.float32))
    plain = fit_codec(CodecConfig("float16"), _unit(4, 8))
    assert isinstance(plain, PlainCodec) and bytes_per_token(plain) == 16
    assert auto_centroids(100_000) == 1024 and auto_centroids(50) == 1


def test_codec_files_round_trip_and_bad_parameters(tmp_path: Path) -> None:
    x = _unit(800, 32)
    codec = fit_residual(x, centroids=16, nbits=1, iters=3)
    codec.save(tmp_path)
    manifest = {"dim": 32, "codec": codec.describe()}
    loaded = load_codec(tmp_path, manifest)
    enc = codec.encode(x)
    np.testing.assert_array_equal(loaded.decode(enc), codec.decode(enc))
    with pytest.raises(ArtifactError, match=r"centroids have 32 dims, the store 64"):
        load_codec(tmp_path, {**manifest, "dim": 64})
    with pytest.raises(ArtifactError, match="uses codec 'opq'; this reader knows float16, float32, residual, pq"):
        load_codec(tmp_path, {"dim": 32, "codec": {"name": "opq"}})


def test_pq_codec_is_close_scores_from_its_codes_and_round_trips(tmp_path: Path) -> None:
    x = _unit(3000, 32)
    codec = fit_codec(CodecConfig("pq", subspaces=8, centroids=16, kmeans_iters=5), x)
    assert isinstance(codec, PQCodec) and bytes_per_token(codec) == 8 + 2 and codec.scores_codes
    enc = codec.encode(x)
    assert enc["pq_codes.bin"].shape == (3000, 8) and enc["pq_codes.bin"].dtype == np.uint8
    dec = codec.decode(enc)
    np.testing.assert_allclose(np.linalg.norm(dec, axis=1), 1, atol=1e-5)
    pq_cos = float((dec * x).sum(1).mean())
    one_bit = fit_residual(x, centroids=16, nbits=1, iters=5)
    bit_cos = float((one_bit.decode(one_bit.encode(x)) * x).sum(1).mean())
    assert pq_cos > max(bit_cos, 0.9), (pq_cos, bit_cos)  # 8 bytes of codes: closer than 4 bytes of signs
    q = np.random.default_rng(1).normal(size=(5, 32)).astype(np.float32)
    np.testing.assert_allclose(codec.dots(q, enc), dec @ q.T, rtol=1e-4, atol=1e-5)  # normalises its own rows
    codec.save(tmp_path)
    loaded = load_codec(tmp_path, {"dim": 32, "codec": codec.describe()})
    np.testing.assert_array_equal(loaded.decode(enc), dec)
    assert codec.describe()["param_files"] == ["codec-centroids.npy", "codec-codebooks.npy"]
    bad = {**enc, "centroid_ids.bin": np.full_like(enc["centroid_ids.bin"], 16)}
    with pytest.raises(StoreDamagedError, match="out of range"):
        codec.decode(bad)


def test_pq_codec_refuses_what_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="must divide the 32 dimensions, got 5"):
        fit_pq(_unit(300, 32), centroids=4, subspaces=5)
    with pytest.raises(ConfigError, match="pq sub-vectors must be >= 1"):
        CodecConfig("pq", subspaces=0)
    with pytest.raises(ConfigError, match="needs 256 codewords"):
        PQCodec(np.zeros((4, 32), np.float32), np.zeros((8, 16, 4), np.float32), normalize=True)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        PQCodec(np.full((4, 32), np.nan, np.float32), np.zeros((8, 256, 4), np.float32), normalize=True)
    assert "subspaces" not in CodecConfig("residual").key() and "nbits" not in CodecConfig("pq").key()


torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact  # noqa: E402
from reranker.data import DataFolder  # noqa: E402
from reranker.engine import BatcherConfig, LocalEngine, RuntimeConfig, passage_encoder  # noqa: E402
from reranker.store import PassageStore  # noqa: E402
from reranker.store.build import build_store, recode_store  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402

CPU = RuntimeConfig(provider="cpu")
BUDGET = BatcherConfig(max_batch_size=4, max_batch_cost=200, max_wait_s=0.0)
RESIDUAL = CodecConfig("residual", nbits=2, centroids=16, sample_passages=20, kmeans_iters=5)


def _scores(art: Artifact, store: Path, query: str, ids: list[str]) -> np.ndarray:
    with LocalEngine.of(str(art.directory), str(store), runtime=CPU, batching=BUDGET, warmup=False) as engine:
        scores, _ = engine.scores(query, ids, [""] * len(ids))
    return np.array(scores)


@pytest.mark.parametrize("arch", ["colbert", "tk", "prett"])
def test_compressed_store_serves_close_scores(tiny_exports, tmp_path: Path, arch: str) -> None:
    art = Artifact.open(tiny_exports[arch][1])
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    ids = [p for p, _ in folder.run("bm25")[qid][:12]]
    passages = {p: folder.passages[p] for p in sorted(folder.passages)[:40] + ids}
    encode = passage_encoder(art, CPU, BUDGET)
    build_store(art, passages, tmp_path / "fp32", encode=encode, dtype="float32", progress=False)
    m = build_store(art, passages, tmp_path / "res", encode=encode, codec=RESIDUAL, chunk=7, progress=False)
    assert m["codec"]["name"] == "residual" and m["codec"]["nbits"] == 2 and m["codec"]["centroids"] == 16
    assert m["bytes_per_token"] == art.manifest["state_dim"] // 4 + 2
    assert m["bytes_per_passage"] == pytest.approx(m["bytes_per_token"] * m["tokens_per_passage"], rel=1e-2)
    assert {"codec-centroids.npy", "centroid_ids.bin", "residual_codes.bin"} <= set(m["files"])
    store = PassageStore.open(tmp_path / "res", art, verify_vectors=True)
    assert store.vectors is None and store.nbytes == m["tokens"] * m["bytes_per_token"]
    many = store.get_many(ids[:5])
    for pid, state in zip(ids[:5], many, strict=True):
        np.testing.assert_array_equal(state, store.get(pid))
    exact = _scores(art, tmp_path / "fp32", folder.queries[qid], ids)
    approx = _scores(art, tmp_path / "res", folder.queries[qid], ids)
    assert np.corrcoef(exact, approx)[0, 1] > 0.8  # tiny random models, 16 centroids
    # the same codec from the stored states without encoding text: identical files
    recode_store(art, tmp_path / "fp32", tmp_path / "recoded", codec=RESIDUAL, progress=False)
    for name in ("residual_codes.bin", "centroid_ids.bin", "codec-centroids.npy"):
        assert (tmp_path / "recoded" / name).read_bytes() == (tmp_path / "res" / name).read_bytes(), name


def test_compressed_store_resumes_and_detects_corrupt_parameters(tiny_exports, tmp_path: Path) -> None:
    art = Artifact.open(tiny_exports["colbert"][1])
    folder = DataFolder.open(DL19_MINI)
    passages = {p: folder.passages[p] for p in sorted(folder.passages)[:30]}
    encode = passage_encoder(art, CPU, BUDGET)
    build_store(art, passages, tmp_path / "whole", encode=encode, codec=RESIDUAL, chunk=8, progress=False)
    calls = {"n": 0}

    def crash_once(texts):
        calls["n"] += 1
        if calls["n"] == 3:  # the sample, a first chunk, then down
            raise KeyboardInterrupt
        return encode(texts)

    with pytest.raises(KeyboardInterrupt):
        build_store(art, passages, tmp_path / "resumed", encode=crash_once, codec=RESIDUAL, chunk=8, progress=False)
    build_store(art, passages, tmp_path / "resumed", encode=crash_once, codec=RESIDUAL, chunk=8, progress=False)
    for name in ("residual_codes.bin", "centroid_ids.bin", "codec-weights.npy"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    weights = tmp_path / "whole" / "codec-weights.npy"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"codec-weights\.npy does not match its sha256"):
        PassageStore.open(tmp_path / "whole", art)
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert manifest["codec"]["param_files"] == ["codec-centroids.npy", "codec-cutoffs.npy", "codec-weights.npy"]


def test_pq_store_serves_scores_close_to_its_fp32_store(tiny_exports, tmp_path: Path) -> None:
    from reranker.cli import main

    art = Artifact.open(tiny_exports["colbert"][1])
    dim = art.manifest["state_dim"]
    folder = DataFolder.open(DL19_MINI)
    qid = sorted(folder.queries)[0]
    ids = [p for p, _ in folder.run("bm25")[qid][:12]]
    passages = {p: folder.passages[p] for p in sorted(folder.passages)[:40] + ids}
    build_store(art, passages, tmp_path / "fp32", encode=passage_encoder(art, CPU, BUDGET), dtype="float32", progress=False)
    sub = dim // 4
    assert main(["recode", "--artifact", str(art.directory), "--store", str(tmp_path / "fp32"), "--codec", "pq",
                 "--codec-subspaces", str(sub), "--codec-centroids", "16", "--out", str(tmp_path / "pq")]) == 0  # fmt: skip
    m = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    assert m["codec"]["name"] == "pq" and m["codec"]["subspaces"] == sub and m["bytes_per_token"] == sub + 2
    store = PassageStore.open(tmp_path / "pq", art, verify_vectors=True)
    assert store.scores_codes and not store.precomputed_norms and store.nbytes == m["tokens"] * (sub + 2)

    def never(texts):
        raise AssertionError("encoded passages for a codec that cannot fit")

    with pytest.raises(ConfigError, match=f"must divide the store's {dim} dimensions"):
        build_store(art, passages, tmp_path / "bad", encode=never, codec=CodecConfig("pq", subspaces=dim + 1), progress=False)
    exact = _scores(art, tmp_path / "fp32", folder.queries[qid], ids)
    approx = _scores(art, tmp_path / "pq", folder.queries[qid], ids)
    assert np.corrcoef(exact, approx)[0, 1] > 0.9  # tiny random models, 16 centroids
    codebooks = tmp_path / "pq" / "codec-codebooks.npy"
    data = bytearray(codebooks.read_bytes())
    data[-1] ^= 0xFF
    codebooks.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"codec-codebooks\.npy does not match its sha256"):
        PassageStore.open(tmp_path / "pq", art)


def test_index_cli_uses_the_architectures_codec_unless_told(tiny_exports, tmp_path: Path) -> None:
    from reranker.cli import main

    art = tiny_exports["colbert"][1]
    common = ["index", "--artifact", str(art), "--data", str(DL19_MINI), "--run", "bm25", "--depth", "2", "--provider", "cpu"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--dtype", "float16", "--out", str(tmp_path / "plain")]) == 0
    default = json.loads((tmp_path / "default" / "manifest.json").read_text())
    plain = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert (default["codec"]["name"], default["codec"]["nbits"]) == ("residual", 1)
    assert plain["codec"] == {"name": "float16"} and plain["bytes_per_token"] > default["bytes_per_token"]


def test_pq_study_reconstructs_unit_vectors_from_its_codebooks() -> None:
    """studies.store_codec.pq (a quality-only study of product quantisation): shapes, unit length,
    closeness, and exactness where every sub-vector is a codeword."""
    import subprocess
    import sys

    code = """
import numpy as np
from studies.store_codec.pq import fit, reconstruct
x = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
coarse, books = fit(x, centroids=8, subspaces=4, points=3000)
assert coarse.shape == (8, 16) and books.shape == (4, 256, 4), (coarse.shape, books.shape)
y = reconstruct(x, coarse, books)
assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
cos = float((x * y).sum(1).mean())
assert 0.9 < cos < 1, cos
few = x[:256]  # 256 vectors, 256 codewords per sub-space: every sub-vector is one
coarse, books = fit(few, centroids=0, subspaces=4, points=256)
assert np.allclose(reconstruct(few, coarse, books), few, atol=1e-5)
try:
    fit(x, centroids=0, subspaces=5, points=3000)
except SystemExit as exc:
    assert "--subspaces" in str(exc)
else:
    raise AssertionError("5 sub-spaces of 16 dimensions")
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
