"""`reranker import` of ColBERT checkpoints as Stanford ColBERT (colbert-ai) and PyLate save them.

Neither library is installed here (colbert-ai needs faiss and torch extensions, PyLate pins its own
stack), so the tests write tiny random checkpoints in their layouts with transformers /
sentence-transformers, and compare our scores with REFERENCE scorers below that follow the two
libraries' code step by step on transformers' own tokenizer and BertModel (colbert-ai 0.2.22:
``QueryTokenizer.tensorize``, ``DocTokenizer.tensorize``, ``ColBERT.query`` / ``doc`` / ``mask``,
``colbert_score_reduce``; PyLate 1.6.0: ``ColBERT.tokenize``, ``insert_prefix_token``, ``encode``,
``skiplist_mask``; MaxSim = sum over query tokens of the best dot product with a kept document token).
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")
st_models = pytest.importorskip("sentence_transformers.models")

from safetensors.torch import load_file  # noqa: E402

from reranker.cli import main  # noqa: E402
from reranker.errors import ConfigError, InvalidInputError  # noqa: E402

from .test_import import WORDS  # noqa: E402  (the same small vocabulary)

PUNCT = list(".,?!'-:;")
QUERIES = ["what is the lifespan of a flea?", "who is robert gray", "define: visceral", "cost, concrete floor!"]
DOCS = [
    "fleas live a year. an insect!",
    "an american captain, robert gray; a captain's captain.",
    "visceral means deep feelings - the deep, deep feelings of a flea who is an insect of the floor",
    "zebra concrete floor? the cost of a floor is a year of cost",
]  # "zebra" is [UNK]
Q_LEN, D_LEN, DIM = 12, 16, 16


def _bert_config(vocab: int) -> transformers.BertConfig:
    return transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )


class HFColBERT(transformers.BertPreTrainedModel):
    """colbert-ai's ``HF_ColBERT``: BertModel under ``bert.`` plus ``linear`` (dim x hidden, no bias)."""

    def __init__(self, config: transformers.BertConfig) -> None:
        super().__init__(config)
        self.bert = transformers.BertModel(config)
        self.linear = torch.nn.Linear(config.hidden_size, DIM, bias=False)
        self.post_init()


def _stanford_dir(root: Path, name: str, **meta) -> Path:
    out = root / name
    torch.manual_seed(3)
    HFColBERT(_bert_config(len(_vocab(root)))).eval().save_pretrained(out)
    transformers.BertTokenizerFast(vocab=str(root / "vocab.txt")).save_pretrained(out)
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "query_maxlen": Q_LEN,
        "doc_maxlen": D_LEN,
        "mask_punctuation": True,
        "attend_to_mask_tokens": False,
        "dim": DIM,
        "similarity": "cosine",
        "interaction": "colbert",
        **meta,
    }
    (out / "artifact.metadata").write_text(json.dumps(metadata, indent=4))
    return out


def _vocab(root: Path) -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", *PUNCT, *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return vocab


def _xlmr_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A SentencePiece-Unigram tokenizer with XLM-RoBERTa's specials and <s> ... </s> layout."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        [*QUERIES, *DOCS, " ".join(WORDS)] * 3,
        trainers.UnigramTrainer(vocab_size=120, special_tokens=specials, unk_token="<unk>"),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    roles = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, mask_token="<mask>", **roles)


def _backbone(name: str, vocab: int) -> transformers.PreTrainedModel:
    small = {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    if name == "modernbert":  # with BERT's WordPiece vocabulary: the encoder family is what differs
        config = transformers.ModernBertConfig(
            **small,
            max_position_embeddings=64,
            pad_token_id=0,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
            global_attn_every_n_layers=2,
            local_attention=8,
        )
        return transformers.ModernBertModel(config)
    if name == "xlm-roberta":
        return transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**small, max_position_embeddings=66, pad_token_id=1))
    return transformers.BertModel(_bert_config(vocab))


def _pylate_dir(root: Path, name: str, backbone: str = "bert", **cfg) -> Path:
    _vocab(root)
    bert_dir = root / f"{name}-bert"
    tokenizer = _xlmr_tokenizer() if backbone == "xlm-roberta" else transformers.BertTokenizerFast(vocab=str(root / "vocab.txt"))
    tokenizer.add_tokens(["[Q] ", "[D] "])  # as PyLate adds its prefixes (and resizes the embeddings)
    torch.manual_seed(4)
    _backbone(backbone, len(tokenizer)).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    t = st_models.Transformer(str(bert_dir))
    dense = st_models.Dense(32, DIM, bias=False, activation_function=torch.nn.Identity())
    out = root / name
    st.SentenceTransformer(modules=[t, dense]).save(str(out))
    modules = json.loads((out / "modules.json").read_text())
    modules[1]["type"] = "pylate.models.Dense.Dense"
    (out / "modules.json").write_text(json.dumps(modules))
    dense_cfg = out / modules[1]["path"] / "config.json"
    dense_cfg.write_text(json.dumps({**json.loads(dense_cfg.read_text()), "use_residual": False}))
    st_cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    st_cfg.update(
        {
            "model_type": "ColBERT",
            "similarity_fn_name": "MaxSim",
            "query_prefix": "[Q] ",
            "document_prefix": "[D] ",
            "query_length": Q_LEN,
            "document_length": D_LEN,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
            **cfg,
        }
    )
    (out / "config_sentence_transformers.json").write_text(json.dumps(st_cfg, indent=2))
    return out


def _insert(t: torch.Tensor, value: int) -> torch.Tensor:  # both libraries' _insert_prefix_token
    return torch.cat([t[:, :1], torch.full((t.shape[0], 1), value, dtype=t.dtype), t[:, 1:]], dim=1)


def _maxsim(q: list[torch.Tensor], d: list[torch.Tensor]) -> np.ndarray:
    return np.array([float((qi @ di.T).max(1).values.sum()) for qi, di in zip(q, d, strict=True)])


def stanford_reference(src: Path) -> np.ndarray:
    """colbert-ai 0.2.22 scoring of QUERIES[i] against DOCS[i]."""
    meta = json.loads((src / "artifact.metadata").read_text())
    tok = transformers.AutoTokenizer.from_pretrained(src)
    bert = transformers.BertModel.from_pretrained(src).eval()
    linear = load_file(str(src / "model.safetensors"))["linear.weight"]
    obj = tok(QUERIES, padding="max_length", truncation=True, return_tensors="pt", max_length=meta["query_maxlen"] - 1)
    ids = _insert(obj["input_ids"], tok.convert_tokens_to_ids(meta["query_token_id"]))
    mask = _insert(obj["attention_mask"], 1)
    ids[ids == tok.pad_token_id] = tok.mask_token_id
    if meta["attend_to_mask_tokens"]:
        mask[ids == tok.mask_token_id] = 1
    with torch.no_grad():
        q = bert(ids, attention_mask=mask)[0] @ linear.T
        q = torch.nn.functional.normalize(q * (ids != tok.pad_token_id).unsqueeze(2).float(), p=2, dim=2)
        obj = tok(DOCS, padding="longest", truncation="longest_first", return_tensors="pt", max_length=meta["doc_maxlen"] - 1)
        ids = _insert(obj["input_ids"], tok.convert_tokens_to_ids(meta["doc_token_id"]))
        d = bert(ids, attention_mask=_insert(obj["attention_mask"], 1))[0] @ linear.T
    skip = {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation} if meta["mask_punctuation"] else set()
    keep = torch.tensor([[x not in skip and x != tok.pad_token_id for x in row] for row in ids.tolist()])
    d = torch.nn.functional.normalize(d * keep.unsqueeze(2).float(), p=2, dim=2)
    return _maxsim(list(q), [d[i][keep[i]] for i in range(len(DOCS))])


def pylate_reference(src: Path) -> np.ndarray:
    """PyLate 1.6.0 scoring (ColBERT.encode then MaxSim) of QUERIES[i] against DOCS[i]."""
    cfg = json.loads((src / "config_sentence_transformers.json").read_text())
    tok = transformers.AutoTokenizer.from_pretrained(src)
    tok.pad_token = tok.mask_token  # PyLate pads with [MASK]
    bert = transformers.AutoModel.from_pretrained(src, attn_implementation="eager").eval()
    modules = json.loads((src / "modules.json").read_text())
    linear = load_file(str(src / modules[1]["path"] / "model.safetensors"))["linear.weight"]
    expand, attend = cfg["do_query_expansion"], cfg["do_query_expansion"] and cfg["attend_to_expansion_tokens"]

    def encode(texts: list[str], is_query: bool) -> list[torch.Tensor]:
        length = cfg["query_length"] if is_query else cfg["document_length"]
        obj = tok(
            texts,
            padding="max_length" if is_query and expand else True,
            truncation="longest_first",
            return_tensors="pt",
            max_length=length - 1,
        )
        ids = _insert(obj["input_ids"], tok.convert_tokens_to_ids(cfg["query_prefix" if is_query else "document_prefix"]))
        mask = _insert(obj["attention_mask"], 1)
        if is_query and attend:
            mask.fill_(1)
        with torch.no_grad():
            emb = bert(ids, attention_mask=mask)[0] @ linear.T
        if is_query:
            masks = torch.ones_like(ids, dtype=torch.bool) if expand else mask.bool()
        else:
            skiplist = torch.tensor([tok.convert_tokens_to_ids(w) for w in cfg["skiplist_words"]])
            masks = mask.bool() & ~torch.isin(ids, skiplist)
        return [torch.nn.functional.normalize(e[m], p=2, dim=1) for e, m in zip(emb, masks, strict=True)]

    return _maxsim(encode(QUERIES, True), encode(DOCS, False))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("colbert-import")
    _vocab(root)
    return {
        "stanford": _stanford_dir(root, "stanford"),
        "stanford-attend": _stanford_dir(root, "stanford-attend", attend_to_mask_tokens=True, mask_punctuation=False),
        "pylate": _pylate_dir(root, "pylate"),
        "pylate-attend": _pylate_dir(root, "pylate-attend", attend_to_expansion_tokens=True),
        "pylate-noexp": _pylate_dir(root, "pylate-noexp", do_query_expansion=False),
        "pylate-modernbert": _pylate_dir(root, "pylate-modernbert", backbone="modernbert"),
        "pylate-xlm-roberta": _pylate_dir(
            root, "pylate-xlm-roberta", backbone="xlm-roberta", query_length=24, document_length=32
        ),
    }


def _ours(src: Path, out: Path) -> np.ndarray:
    from reranker.models import Tokens
    from reranker.models.checkpoint import load_checkpoint
    from reranker.tokenization import Preprocessor

    assert main(["import", "--from", str(src), "--out", str(out)]) == 0
    loaded = load_checkpoint(out)
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    q, p = prep.queries(QUERIES), prep.passages(DOCS)
    with torch.no_grad():
        return loaded.model.score(
            Tokens(torch.from_numpy(q.input_ids), torch.from_numpy(q.attention_mask)),
            Tokens(torch.from_numpy(p.input_ids), torch.from_numpy(p.attention_mask)),
        ).numpy()


@pytest.mark.parametrize("name", ["stanford", "stanford-attend"])
def test_stanford_colbert_scores_as_colbert_ai(saved, tmp_path, name) -> None:
    expected = stanford_reference(saved[name])
    np.testing.assert_allclose(_ours(saved[name], tmp_path / "ckpt"), expected, atol=1e-5, rtol=1e-5)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert (cfg["arch"], cfg["query_max_len"], cfg["passage_max_len"], cfg["colbert_dim"]) == ("colbert", Q_LEN, D_LEN, DIM)
    assert (cfg["colbert_query_marker"], cfg["colbert_passage_marker"]) == (5, 6)  # [unused0], [unused1]
    assert (cfg["colbert_unattended_id"] == 4) == (name == "stanford")  # [MASK], not attended by default
    assert bool(cfg["colbert_skiplist"]) == (name == "stanford")


@pytest.mark.parametrize("name", ["pylate", "pylate-attend", "pylate-noexp", "pylate-modernbert", "pylate-xlm-roberta"])
def test_pylate_scores_as_pylate(saved, tmp_path, name) -> None:
    expected = pylate_reference(saved[name])
    got = _ours(saved[name], tmp_path / "ckpt")
    diff = np.abs(got - expected).max()
    print(f"pylate parity {name}: max abs diff {diff:.2e}, scores {expected.min():.2f}..{expected.max():.2f}")
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    hf = json.loads((tmp_path / "ckpt" / "config.json").read_text())["hf_config"]
    assert (hf or {}).get("model_type") == {"pylate-modernbert": "modernbert", "pylate-xlm-roberta": "xlm-roberta"}.get(name)


def test_the_skiplist_and_unattended_padding_change_scores(saved, tmp_path) -> None:
    """The parity above would hold by accident if the options did nothing: they must move the scores."""
    plain = tmp_path / "plain"
    shutil.copytree(saved["stanford"], plain)
    meta = json.loads((plain / "artifact.metadata").read_text())
    (plain / "artifact.metadata").write_text(json.dumps({**meta, "mask_punctuation": False}))
    assert np.abs(_ours(plain, tmp_path / "a") - _ours(saved["stanford"], tmp_path / "b")).max() > 1e-3
    (plain / "artifact.metadata").write_text(json.dumps({**meta, "attend_to_mask_tokens": True}))
    assert np.abs(_ours(plain, tmp_path / "c") - _ours(saved["stanford"], tmp_path / "b")).max() > 1e-3


@pytest.mark.parametrize("name", ["stanford", "pylate", "pylate-modernbert", "pylate-xlm-roberta"])
def test_imported_colbert_exports_and_serves_from_a_store(saved, tmp_path, name) -> None:
    pytest.importorskip("onnxruntime")
    from reranker.artifact import Artifact
    from reranker.engine import LocalEngine, RuntimeConfig, passage_encoder
    from reranker.store.build import build_store

    assert main(["import", "--from", str(saved[name]), "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["export", "--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "onnx")]) == 0
    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    art = Artifact.open(tmp_path / "onnx")
    passages = {f"p{i}": d for i, d in enumerate(DOCS)}
    build_store(art, passages, tmp_path / "store", encode=passage_encoder(art, cpu), progress=False)
    reference = stanford_reference if name == "stanford" else pylate_reference
    expected = reference(saved[name])
    with LocalEngine.of(str(art.directory), str(tmp_path / "store"), runtime=cpu) as engine:
        got = [engine.scores(q, [f"p{i}"])[0][0] for i, q in enumerate(QUERIES)]  # stored (fp16) states
        texts = [engine.scores(q, [""], [DOCS[i]], aggregate="first")[0][0] for i, q in enumerate(QUERIES)]  # as cut at build
        limit = json.loads((tmp_path / "ckpt" / "config.json").read_text())["query_max_len"] - 3  # [CLS], marker, [SEP]
        with pytest.raises(InvalidInputError, match=f"allows at most {limit} "):
            engine.scores("what " * 30, ["p0"])
    np.testing.assert_allclose(got, expected, atol=2e-3)  # fp16 store
    np.testing.assert_allclose(texts, expected, atol=1e-5)


def _edited_copy(source: Path, dest: Path, pattern: str, **changes: object) -> Path:
    """A copy of a saved model with ``changes`` merged into the JSON file matching ``pattern``."""
    shutil.copytree(source, dest)
    path = next(dest.glob(pattern))
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return dest


def test_unsupported_colbert_variants_are_refused_with_the_reason(saved, tmp_path) -> None:
    from reranker.models.hf_import import import_model

    l2 = _edited_copy(saved["stanford"], tmp_path / "l2", "artifact.metadata", similarity="l2")
    with pytest.raises(ConfigError, match="similarity 'l2' / interaction 'colbert' is not supported"):
        import_model(l2, tmp_path / "a")
    with pytest.raises(ConfigError, match="pads queries to 12 tokens; --query-max-len 32"):
        import_model(saved["stanford"], tmp_path / "b", query_max_len=32)
    biased = _edited_copy(saved["pylate"], tmp_path / "biased", "*Dense/config.json", bias=True)
    with pytest.raises(ConfigError, match="Dense with bias=True"):
        import_model(biased, tmp_path / "c")
    no_prefix = _edited_copy(saved["pylate"], tmp_path / "no-prefix", "config_sentence_transformers.json", query_prefix="")
    with pytest.raises(ConfigError, match="empty query/document prefixes"):
        import_model(no_prefix, tmp_path / "d")
