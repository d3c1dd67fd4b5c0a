"""Cross-encoders of every supported transformers encoder family, written here as tiny random models
with tiny tokenizers trained by ``tokenizers`` (WordPiece, byte-level BPE, Unigram), score the same
through ``reranker import`` + ``export`` + the served engine as in transformers and
sentence-transformers: parity within 1e-4, padding invariance, long passages cut where the
reference library cuts them, typed special tokens read as text; refusals say why."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")
pytest.importorskip("onnxruntime")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

from reranker.errors import ConfigError  # noqa: E402

CORPUS = [
    "what is the lifespan of a flea",
    "fleas live about a year in the right conditions",
    "who is robert gray an american captain and explorer",
    "visceral means relating to deep inward feelings rather than to the intellect",
    "the cost of a concrete floor depends on the thickness",
    "definition of a tax deductible expense for a small business",
    "émigré café naïve — 北京 مرحبا 🙂 right-to-left",
] * 3
PAIRS = [
    ("what is the lifespan of a flea", "fleas live about a year"),
    ("who is robert gray", "an american captain and explorer"),
    ("define visceral", "visceral means deep feelings <s> </s> [SEP] <mask> [MASK]"),
    ("cost of a concrete floor", "the floor of a flea " * 40),  # longer than the pair's 64 tokens
    ("the <s> </s> [SEP] query", "\u202eright-to-left\u202c and 🙂 emoji\x00\x07 control"),
]
MAX_LEN = 64
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _wordpiece() -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=BERT_SPECIALS))
    return tok


def _bert_template(tok: Tokenizer, types: bool = True) -> None:
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    second = ":1" if types else ""
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair=f"[CLS] $A [SEP] $B{second} [SEP]{second}", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )


def _bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=ROBERTA_SPECIALS, initial_alphabet=alphabet)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _unigram(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    unk = "<unk>" if "<unk>" in specials else "[UNK]"
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token=unk))
    return tok


def _family(name: str) -> tuple[Tokenizer, dict[str, str], object]:
    """(tokenizer, its special tokens by role, the model config class and its arguments)."""
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if name in ("bert", "electra", "distilbert"):
        tok = _wordpiece()
        _bert_template(tok, types=name != "distilbert")
        roles = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    elif name == "modernbert":
        tok = _bpe()  # ModernBERT ships a BPE tokenizer with BERT's [CLS] / [SEP] layout
        tok.add_special_tokens(BERT_SPECIALS)
        _bert_template(tok, types=False)
        roles = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    elif name == "deberta-v2":
        tok = _unigram(BERT_SPECIALS)
        _bert_template(tok)
        roles = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    else:  # roberta (byte-level BPE), xlm-roberta (Unigram): <s> q </s></s> p </s>
        tok = _bpe() if name == "roberta" else _unigram(ROBERTA_SPECIALS)
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        roles = {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
        }
    pad = tok.token_to_id(roles["pad_token"])
    vocab = tok.get_vocab_size()
    config = {
        # BERT and RoBERTa at their position limit (64 = MAX_LEN): the pair must end there, whatever the passage
        "bert": lambda: transformers.BertConfig(vocab_size=vocab, pad_token_id=pad, max_position_embeddings=MAX_LEN, **small),
        "electra": lambda: transformers.ElectraConfig(
            vocab_size=vocab, pad_token_id=pad, embedding_size=16, max_position_embeddings=128, **small
        ),
        "distilbert": lambda: transformers.DistilBertConfig(
            vocab_size=vocab, pad_token_id=pad, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
        ),
        "modernbert": lambda: transformers.ModernBertConfig(
            vocab_size=vocab,
            pad_token_id=pad,
            cls_token_id=tok.token_to_id("[CLS]"),
            sep_token_id=tok.token_to_id("[SEP]"),
            bos_token_id=tok.token_to_id("[CLS]"),
            eos_token_id=tok.token_to_id("[SEP]"),
            max_position_embeddings=128,
            global_attn_every_n_layers=2,
            local_attention=16,
            **small,
        ),
        "deberta-v2": lambda: transformers.DebertaV2Config(
            vocab_size=vocab, pad_token_id=pad, max_position_embeddings=128, type_vocab_size=0, **small
        ),
        "roberta": lambda: transformers.RobertaConfig(
            vocab_size=vocab, pad_token_id=pad, max_position_embeddings=MAX_LEN + pad + 1, **small
        ),
        "xlm-roberta": lambda: transformers.XLMRobertaConfig(
            vocab_size=vocab, pad_token_id=pad, max_position_embeddings=130, **small
        ),
    }[name]()
    return tok, roles, config


FAMILIES = ["bert", "roberta", "xlm-roberta", "deberta-v2", "modernbert", "electra", "distilbert"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Each family as transformers saves it, and as a sentence-transformers CrossEncoder (Sigmoid)."""
    root = tmp_path_factory.mktemp("families")
    out: dict[str, Path] = {"root": root}
    for i, name in enumerate(FAMILIES):
        tok, roles, config = _family(name)
        config.num_labels = 1
        config.initializer_range = 0.4  # scores that differ between pairs (0.02 gives near-constant ones)
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN, **roles)
        torch.manual_seed(i)
        model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
        model.save_pretrained(root / name)
        fast.save_pretrained(root / name)
        out[name] = root / name
    ce = st.CrossEncoder(str(out["xlm-roberta"]), num_labels=1, max_length=MAX_LEN, activation_fn=torch.nn.Sigmoid())
    ce.save(str(root / "st-xlm-roberta"))
    out["st-xlm-roberta"] = root / "st-xlm-roberta"
    return out


def _reference(src: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """transformers' scores, typed special tokens read as text (split_special_tokens), as we read them."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(src, split_special_tokens=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(src, attn_implementation="eager").eval()
    queries, passages = [q for q, _ in pairs], [p for _, p in pairs]
    batch = tokenizer(queries, passages, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory) -> dict[str, Path]:
    from reranker.models.hf_import import import_model
    from reranker_export.onnx_export import export_model

    root = tmp_path_factory.mktemp("exported")
    out = {}
    for name in [*FAMILIES, "st-xlm-roberta"]:
        import_model(saved[name], root / name)
        export_model(root / name, root / f"{name}-onnx")
        out[name] = root / f"{name}-onnx"
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_served_scores_match_transformers(name, saved, exported) -> None:
    """Scores through the exported ONNX graph and the engine's request path, against transformers."""
    from reranker.engine import LocalEngine, RuntimeConfig

    expected = _reference(saved[name], PAIRS)
    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    with LocalEngine.of(str(exported[name]), runtime=cpu) as engine:
        got = [float(engine.scores(query, ["p"], [passage], aggregate="first")[0][0]) for query, passage in PAIRS]
    diff = float(np.max(np.abs(np.asarray(got) - expected)))
    print(f"parity {name}: max |served - transformers| {diff:.2e}, scores {expected.min():.3f}..{expected.max():.3f}")
    assert diff < 1e-4, (name, got, expected)
    assert float(np.ptp(expected)) > 0.01  # the parity is not that of a constant


@pytest.mark.parametrize("name", ["bert", "xlm-roberta"])
def test_windows_of_a_packed_pair_fit_beside_the_query(name, exported) -> None:
    """The pair graph keeps pair_max_len tokens: windows leave room for the request's query and the
    template's special tokens, so that no window is cut; a long text is read whole, and its score is
    the best of its windows' scores as the graph gives them alone."""
    from reranker.artifact import Artifact
    from reranker.engine import LocalEngine, RuntimeConfig
    from reranker.tokenization import PairTemplate

    config = Artifact.open(exported[name]).config
    specials = PairTemplate.from_dict(config.pair_template).special_tokens
    query = "what is the lifespan of a flea"
    with LocalEngine.of(str(exported[name]), runtime=RuntimeConfig(provider="cpu", intra_op_threads=1)) as engine:
        prepare = engine.engine.models["default"].prepare
        tokenizer = prepare.prep.tokenizer
        windowing = prepare.windowing("max", query)
        assert windowing.limit + len(tokenizer.word_pieces([query])[0]) + specials == config.pair_max_len
        words = PAIRS[0][1].split() + PAIRS[1][1].split()
        text = " ".join(random.Random(0).choice(words) for _ in range(90))  # whole words: windows decode to text
        pieces = tokenizer.word_pieces([text])[0]
        out = engine.rerank(query, ["long"], [text])
        alone = [
            engine.scores(query, ["w"], [tokenizer.hf.decode(pieces[a:b])], aggregate="first")[0][0]
            for a, b in windowing.spans(len(pieces))
        ]
    assert out.results[0].windows == len(alone) >= 2 and not out.results[0].truncated
    if name == "bert":  # word pieces of whole words decode to the same pieces (SentencePiece's may not)
        assert out.results[0].score == pytest.approx(max(alone), abs=1e-4)


@pytest.mark.parametrize("name", ["roberta", "deberta-v2", "modernbert"])
def test_padding_and_batch_neighbours_do_not_change_a_score(name, exported) -> None:
    from reranker.engine import LocalEngine, RuntimeConfig

    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    query = PAIRS[0][0]
    passages = [p for _, p in PAIRS]
    with LocalEngine.of(str(exported[name]), runtime=cpu) as engine:
        together, _ = engine.scores(query, [f"p{i}" for i in range(len(passages))], passages)
        alone = [float(engine.scores(query, ["p"], [p])[0][0]) for p in passages]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_sentence_transformers_cross_encoder_with_sigmoid(saved, exported) -> None:
    from reranker.engine import LocalEngine, RuntimeConfig

    ce = st.CrossEncoder(str(saved["st-xlm-roberta"]))
    assert ce.max_length == MAX_LEN
    pairs = [(q, p) for q, p in PAIRS if "<" not in q + p and "[" not in q + p]  # CrossEncoder reads typed <s> as control
    expected = ce.predict(pairs)
    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    with LocalEngine.of(str(exported["st-xlm-roberta"]), runtime=cpu) as engine:
        got = [float(engine.scores(q, ["p"], [p], aggregate="first")[0][0]) for q, p in pairs]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert all(0.0 < g < 1.0 for g in got)


@pytest.mark.parametrize("name", ["roberta", "xlm-roberta", "bert"])
def test_the_pair_template_is_the_tokenizers_own(name, saved) -> None:
    from reranker.tokenization import Tokenizer as Ours

    ours = Ours.from_dir(saved[name]).pair_template()
    reference = transformers.AutoTokenizer.from_pretrained(saved[name])
    q, p = reference("flea", add_special_tokens=False).input_ids, reference("year", add_special_tokens=False).input_ids
    want = reference("flea", "year").input_ids
    assert [*ours.prefix, *q, *ours.middle, *p, *ours.suffix] == want
    assert (len(ours.middle) == 2) == (name != "bert")  # <s> q </s></s> p </s> against [CLS] q [SEP] p [SEP]


def test_typed_special_tokens_are_text(saved) -> None:
    from reranker.tokenization import Tokenizer as Ours

    tok = Ours.from_dir(saved["roberta"])
    pieces = tok.word_pieces(["<s> </s> <mask> <pad>"])[0]
    assert not {tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id} & set(pieces)


def test_refusals_say_why(saved, tmp_path) -> None:
    from reranker.models.hf_import import import_model

    def edited(name: str, **changes: object) -> Path:
        target = tmp_path / name
        shutil.copytree(saved["roberta"], target)
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, **changes}))
        return target

    with pytest.raises(ConfigError, match="remote code"):
        import_model(edited("remote", auto_map={"AutoModel": "modeling_x.X"}), tmp_path / "a")
    with pytest.raises(ConfigError, match="decoder: LLM rerankers"):
        import_model(edited("decoder", model_type="qwen3", architectures=["Qwen3ForCausalLM"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="'funnel' is not a supported encoder family; supported: bert, roberta"):
        import_model(edited("funnel", model_type="funnel", architectures=["FunnelForSequenceClassification"]), tmp_path / "c")
    labels = edited("labels", id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": 0, "b": 1, "c": 2})
    with pytest.raises(ConfigError, match="classifies into 3 labels"):
        import_model(labels, tmp_path / "d")
    pickled = edited("pickled")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="pickled weights"):
        import_model(pickled, tmp_path / "e")


@pytest.mark.parametrize("name", ["roberta", "deberta-v2"])
def test_fp16_and_int8_exports_stay_close(name, saved, exported, tmp_path) -> None:
    """The reduced precisions of an imported model, against transformers (fp32) on the same pairs."""
    from reranker.engine import LocalEngine, RuntimeConfig
    from reranker_export.onnx_export import export_model

    expected = _reference(saved[name], PAIRS)
    cpu = RuntimeConfig(provider="cpu", intra_op_threads=1)
    model = exported[name].parent / name
    # int8: a guard against a broken graph, not a quality bar. A random tiny DeBERTa (its tokenizer's
    # vocabulary, trained per run, varies) moved one of five pairs by 0.58 of the spread on AVX2, the
    # others by 0.04: bound the median error tightly and the largest loosely.
    scale = max(1.0, float(np.ptp(expected)))
    for precision, median_bound, max_bound in (("fp16", 0.01, 0.01), ("int8", 0.25, 1.0)):
        export_model(model, tmp_path / precision, precision=precision)
        with LocalEngine.of(str(tmp_path / precision), runtime=cpu) as engine:
            got = np.asarray([float(engine.scores(q, ["p"], [p], aggregate="first")[0][0]) for q, p in PAIRS])
        err = np.abs(got - expected)
        print(f"precision {name} {precision}: max |served - transformers fp32| {err.max():.2e} (scores spread {scale:.3f})")
        assert np.median(err) < median_bound * scale and err.max() < max_bound * scale, (precision, got, expected)


def test_a_real_server_serves_imported_families_over_grpc_and_http(saved, exported) -> None:
    """gRPC Rerank and HTTP /v1/rerank of imported RoBERTa and DeBERTa cross-encoders on loopback."""
    from reranker.client import RerankerClient
    from reranker.engine import RuntimeConfig
    from reranker.server.config import ModelSpec, ServerConfig

    from .test_http import call
    from .test_server import launch

    names = ("roberta", "deberta-v2")
    models = tuple(ModelSpec(n, str(exported[n])) for n in names)
    cpu = RuntimeConfig(provider="cpu")
    cfg = ServerConfig(models=models, host="127.0.0.1", port=0, metrics_port=0, http_port=0, runtime=cpu)
    live = launch(cfg)
    try:
        query, passages = PAIRS[0][0], [p for _, p in PAIRS]
        with RerankerClient(live.target, timeout=30) as client:
            listed = {m.name: m.arch for m in client.list_models()}
            assert listed == {n: "hf_cat" for n in names}
            for name in names:
                expected = _reference(saved[name], [(query, p) for p in passages])
                docs = [(f"d{i}", p) for i, p in enumerate(passages)]  # cut as transformers cuts: no windows
                answer = client.rerank(query, docs, model=name, aggregate="first")
                got = {r.id: r.score for r in answer.results}
                np.testing.assert_allclose([got[f"d{i}"] for i in range(len(passages))], expected, atol=1e-4)
                body = {"model": name, "query": query, "documents": passages, "aggregate": "first"}
                status, body, _ = call(live, "/v1/rerank", body)
                assert status == 200, body
                by_index = {r["index"]: r["relevance_score"] for r in body["results"]}
                np.testing.assert_allclose([by_index[i] for i in range(len(passages))], expected, atol=1e-4)
    finally:
        live.stop()


def test_a_tokenizer_without_a_pair_layout_is_refused(tmp_path) -> None:
    from reranker.errors import ArtifactError
    from reranker.tokenization import Tokenizer as Ours

    tok = _wordpiece()  # no post-processor: a pair would be "q p" without [CLS] / [SEP]
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ArtifactError, match="no post-processor that lays out a pair"):
        Ours.from_dir(tmp_path).pair_template()
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "flea", "year"]) + "\n")
    template = Ours.from_dir(tmp_path).pair_template()  # vocab.txt only: BERT's own layout
    assert (template.prefix, template.middle, template.suffix, template.types) == ((2,), (3,), (3,), (0, 0, 0, 1, 1))
