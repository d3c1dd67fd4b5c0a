"""`reranker import`: models saved by transformers and sentence-transformers, written here as tiny random
models, score the same in reranker as in the original library on the same inputs; other formats are
refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")
st_models = pytest.importorskip("sentence_transformers.models")

from reranker.cli import main  # noqa: E402
from reranker.errors import ConfigError  # noqa: E402

_WORDS = (
    "the a of is what how who define flea fleas live year lifespan long cost concrete floor robert gray "
    "visceral means feelings deep an insect american captain"
)
WORDS = _WORDS.split()
PAIRS = [
    ("what is the lifespan of a flea", "fleas live a year"),
    ("who is robert gray", "an american captain"),
    ("define visceral", "visceral means deep feelings"),
    ("cost of a concrete floor", "the floor of a flea"),
    ("how long", "what is a year"),
]


def _bert_config(**extra):
    return transformers.BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        **extra,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models in each supported format, saved by their own libraries."""
    root = tmp_path_factory.mktemp("import")
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(root / "vocab.txt"))
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(_bert_config(num_labels=1)).eval()
    hf.save_pretrained(root / "hf-cross")
    tokenizer.save_pretrained(root / "hf-cross")
    st.CrossEncoder(str(root / "hf-cross"), num_labels=1).save(str(root / "st-cross"))
    torch.manual_seed(1)
    transformers.BertModel(_bert_config()).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    out = {"hf-cross": root / "hf-cross", "st-cross": root / "st-cross"}
    for name, pooling, normalize in (("st-mean-norm", "mean", True), ("st-cls", "cls", False)):
        t = st_models.Transformer(str(root / "bert"))
        modules = [t, st_models.Pooling(t.get_embedding_dimension(), pooling)]
        st.SentenceTransformer(modules=[*modules, st_models.Normalize()] if normalize else modules).save(str(root / name))
        out[name] = root / name
    t = st_models.Transformer(str(root / "bert"))
    dense = [t, st_models.Pooling(32, "mean"), st_models.Dense(32, 16)]
    st.SentenceTransformer(modules=dense).save(str(root / "st-dense"))
    out["st-dense"] = root / "st-dense"
    out["root"] = root
    return out


def _ours(src: Path, out: Path) -> np.ndarray:
    from reranker.models import Tokens
    from reranker.models.checkpoint import load_checkpoint
    from reranker.tokenization import Preprocessor

    assert main(["import", "--from", str(src), "--out", str(out), "--query-max-len", "16", "--passage-max-len", "32"]) == 0
    loaded = load_checkpoint(out)
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    q, p = prep.queries([a for a, _ in PAIRS]), prep.passages([b for _, b in PAIRS])
    with torch.no_grad():
        return loaded.model.score(
            Tokens(torch.from_numpy(q.input_ids), torch.from_numpy(q.attention_mask)),
            Tokens(torch.from_numpy(p.input_ids), torch.from_numpy(p.attention_mask)),
        ).numpy()


def test_transformers_cross_encoder_scores_its_logit(saved, tmp_path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(saved["hf-cross"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(saved["hf-cross"]).eval()
    with torch.no_grad():
        batch = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
        expected = model(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(_ours(saved["hf-cross"], tmp_path / "ckpt"), expected, atol=1e-5)


def test_sentence_transformers_cross_encoder_scores_its_activated_score(saved, tmp_path) -> None:
    expected = st.CrossEncoder(str(saved["st-cross"])).predict(PAIRS)
    got = _ours(saved["st-cross"], tmp_path / "ckpt")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert (config["arch"], config["cat_activation"]) == ("hf_cat", "sigmoid")  # transformers' own BERT


@pytest.mark.parametrize("name", ["st-mean-norm", "st-cls", "st-dense"])
def test_sentence_transformers_bi_encoder_scores_its_similarity(saved, tmp_path, name) -> None:
    model = st.SentenceTransformer(str(saved[name]))
    qv = model.encode([a for a, _ in PAIRS], convert_to_numpy=True)
    pv = model.encode([b for _, b in PAIRS], convert_to_numpy=True)
    expected = (qv * pv).sum(1)  # the dot product; the cosine when the model normalises
    np.testing.assert_allclose(_ours(saved[name], tmp_path / "ckpt"), expected, atol=1e-5)


def test_imported_models_export_and_serve(saved, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    for name in ("st-cross", "st-dense"):
        assert (
            main(
                [
                    "import",
                    "--from",
                    str(saved[name]),
                    "--out",
                    str(tmp_path / name),
                    "--query-max-len",
                    "16",
                    "--passage-max-len",
                    "32",
                ]
            )
            == 0
        )
        assert main(["export", "--model", str(tmp_path / name), "--out", str(tmp_path / f"{name}-onnx")]) == 0
    from reranker.artifact import Artifact
    from reranker.engine import LocalEngine, RuntimeConfig, passage_encoder
    from reranker.store.build import build_store

    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    art = Artifact.open(tmp_path / "st-dense-onnx")  # 16-d vectors after the Dense layer, in a passage store
    passages = {f"p{i}": b for i, (_, b) in enumerate(PAIRS)}
    build_store(art, passages, tmp_path / "store", encode=passage_encoder(art, cpu), progress=False)
    with LocalEngine.of(str(art.directory), str(tmp_path / "store"), runtime=cpu) as engine:
        scores, _ = engine.scores(PAIRS[0][0], list(passages))
    expected = st.SentenceTransformer(str(saved["st-dense"])).encode([PAIRS[0][0], *passages.values()])
    np.testing.assert_allclose(scores, expected[1:] @ expected[0], atol=2e-3)  # fp16 store


def test_unsupported_formats_are_refused_with_the_reason(saved, tmp_path, capsys) -> None:
    from reranker.models.hf_import import import_model

    two_dense = tmp_path / "two-dense"
    shutil.copytree(saved["st-dense"], two_dense)
    modules = json.loads((two_dense / "modules.json").read_text())
    (two_dense / "modules.json").write_text(json.dumps([*modules, {**modules[2], "idx": 3, "name": "3"}]))
    with pytest.raises(ConfigError, match=r"\['Dense', 'Dense'\] after pooling; supported: at most one Dense"):
        import_model(two_dense, tmp_path / "a", passage_max_len=32)
    two = tmp_path / "two-labels"
    transformers.BertForSequenceClassification(_bert_config(num_labels=2)).save_pretrained(two)
    shutil.copy(saved["hf-cross"] / "tokenizer.json", two)
    with pytest.raises(ConfigError, match="classifies into 2 labels"):
        import_model(two, tmp_path / "b", passage_max_len=32)
    assert main(["import", "--from", str(saved["root"] / "bert"), "--out", str(tmp_path / "c")]) == 2
    assert "supported: *ForSequenceClassification" in capsys.readouterr().err
