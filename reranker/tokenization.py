"""Tokenisation into fixed-layout id arrays (numpy; no torch): WordPiece, BPE or Unigram.

Queries and passages are encoded separately, each as ``[CLS] tokens [SEP]`` (or bare tokens for
TK), left-aligned and padded to the longest row of the batch. Models that need the pair
``[CLS] q [SEP] p [SEP]`` pack it themselves, so that the same arrays serve every architecture
and stored passage states never depend on the query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from reranker.arch import spec
from reranker.config import ModelConfig
from reranker.errors import ArtifactError, InvalidInputError

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class Encoded:
    """A padded batch of token ids."""

    input_ids: np.ndarray
    """(batch, length) int64 token ids, left-aligned."""
    attention_mask: np.ndarray
    """(batch, length) int64, 1 for real tokens (and ColBERT's [MASK] augmentation), 0 for padding."""
    truncated: np.ndarray
    """(batch,) bool: the text had more word pieces than the maximum length allowed."""
    lengths: np.ndarray
    """(batch,) int64 word pieces of each text before truncation (without special tokens)."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


SPECIAL_NAMES = {
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "pad": ("[PAD]", "<pad>"),
    "mask": ("[MASK]", "<mask>"),
    "unk": ("[UNK]", "<unk>"),
}
"""The special tokens by role, in BERT's (WordPiece) and RoBERTa's / XLM-R's (BPE, Unigram) spelling."""


@dataclass(frozen=True)
class PairTemplate:
    """How the tokenizer's own post-processor lays out a (query, passage) pair, read from
    ``tokenizer.json``: ``prefix`` query ``middle`` passage ``suffix`` (BERT: ``[CLS] q [SEP] p [SEP]``,
    RoBERTa / XLM-R: ``<s> q </s></s> p </s>``), with the token type of each of the five parts."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[int, int, int, int, int]
    """Token type ids of prefix, query, middle, passage, suffix."""

    @property
    def special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def to_dict(self) -> dict[str, list[int]]:
        return {"prefix": list(self.prefix), "middle": list(self.middle), "suffix": list(self.suffix), "types": list(self.types)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairTemplate:
        types = tuple(int(x) for x in data["types"])
        if len(types) != 5:
            raise ArtifactError(f"a pair template has 5 token types (prefix, query, middle, passage, suffix), got {types}")
        prefix, middle, suffix = (tuple(int(x) for x in data[k]) for k in ("prefix", "middle", "suffix"))
        return cls(prefix, middle, suffix, (types[0], types[1], types[2], types[3], types[4]))


class Tokenizer:
    """A tokenizer from the ``tokenizers`` library (WordPiece, BPE or Unigram, as the checkpoint ships it)
    with the special-token layout every model here uses."""

    def __init__(self, hf: HFTokenizer) -> None:
        hf.no_truncation()
        hf.no_padding()
        # User text is text: "[MASK]", "[SEP]", "<s>", "</s>" or "<mask>" typed in a query or passage
        # become the pieces of their characters, never the control tokens the models are built around.
        # The only special ids in an encoding are the ones placed below (or by the pair template).
        hf.encode_special_tokens = True
        self.hf = hf
        ids: dict[str, int] = {}
        for role, names in SPECIAL_NAMES.items():
            found = [i for i in (hf.token_to_id(n) for n in names) if i is not None]
            if found:
                ids[role] = found[0]
        missing = sorted({"cls", "sep", "pad", "unk"} - set(ids))
        if missing:
            wanted = ", ".join("/".join(SPECIAL_NAMES[r]) for r in missing)
            raise ArtifactError(f"tokenizer lacks the special tokens {wanted}")
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = ids["cls"], ids["sep"], ids["pad"], ids["unk"]
        self.mask_id = ids.get("mask", -1)
        """-1 when the tokenizer has no mask token (only ColBERT's query augmentation needs one)."""

    def pair_template(self) -> PairTemplate:
        """The layout of a (query, passage) pair by the tokenizer's own post-processor.

        Raises:
            ArtifactError: ``tokenizer.json`` has no post-processor that marks a pair's two sequences.
        """
        probe = self.hf.encode("a", "b", add_special_tokens=True)
        seq = probe.sequence_ids
        if 0 not in seq or 1 not in seq or None not in seq:
            raise ArtifactError(
                "the tokenizer has no post-processor that lays out a pair of texts with its special tokens "
                "(tokenizer.json's post_processor is missing)"
            )
        first0, last0 = seq.index(0), len(seq) - 1 - seq[::-1].index(0)
        first1, last1 = seq.index(1), len(seq) - 1 - seq[::-1].index(1)
        parts = (range(0, first0), range(last0 + 1, first1), range(last1 + 1, len(seq)))
        if any(seq[i] is not None for part in parts for i in part) or last0 >= first1:
            raise ArtifactError(f"unexpected pair layout {probe.tokens}: special tokens inside a text")
        ids, types = probe.ids, probe.type_ids

        def type_of(part: range, default: int) -> int:
            return types[part[0]] if len(part) else default

        prefix, middle, suffix = ([ids[i] for i in part] for part in parts)
        return PairTemplate(
            tuple(prefix),
            tuple(middle),
            tuple(suffix),
            (
                type_of(parts[0], types[first0]),
                types[first0],
                type_of(parts[1], types[first0]),
                types[first1],
                type_of(parts[2], types[first1]),
            ),
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load ``tokenizer.json`` from a model directory, or build one from ``vocab.txt``."""
        path = Path(path)
        if (path / TOKENIZER_FILE).is_file():
            return cls(HFTokenizer.from_file(str(path / TOKENIZER_FILE)))
        if (path / "vocab.txt").is_file():
            lower = True
            cfg = path / "tokenizer_config.json"
            if cfg.is_file():
                lower = bool(json.loads(cfg.read_text()).get("do_lower_case", True))
            hf = HFTokenizer(WordPiece.from_file(str(path / "vocab.txt"), unk_token="[UNK]"))
            hf.normalizer = normalizers.BertNormalizer(lowercase=lower)
            hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            cls_id, sep_id = hf.token_to_id("[CLS]"), hf.token_to_id("[SEP]")
            if cls_id is not None and sep_id is not None:  # BERT's layout, as BertTokenizerFast adds it
                hf.post_processor = processors.TemplateProcessing(
                    single="[CLS] $A [SEP]",
                    pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                    special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
                )
            return cls(hf)
        raise ArtifactError(f"{path} has no tokenizer: expected {TOKENIZER_FILE} or vocab.txt")

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size())

    def save(self, directory: str | Path) -> Path:
        target = Path(directory) / TOKENIZER_FILE
        self.hf.save(str(target))
        return target

    def word_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text, without special tokens and without truncation."""
        return [enc.ids for enc in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def encode(
        self, texts: Sequence[str], max_len: int, *, special: bool = True, pad_to_max_with_mask: bool = False, marker: int = -1
    ) -> Encoded:
        """Encode texts as ``[CLS] pieces [SEP]`` (or bare pieces with ``special=False``).

        Texts longer than ``max_len`` are truncated (and flagged). ``pad_to_max_with_mask`` pads
        every row to ``max_len`` with [MASK] tokens of mask 1 (ColBERT's query augmentation; whether
        BERT attends to them is the model's business). ``marker`` >= 0 is a token id placed after
        [CLS] (``[CLS] marker pieces [SEP]``, as Stanford ColBERT and PyLate mark queries/documents).
        """
        if not texts:
            raise InvalidInputError("cannot encode an empty list of texts")
        return self.encode_pieces(
            self.word_pieces(texts), max_len, special=special, pad_to_max_with_mask=pad_to_max_with_mask, marker=marker
        )

    def encode_pieces(
        self,
        pieces: Sequence[Sequence[int]],
        max_len: int,
        *,
        special: bool = True,
        pad_to_max_with_mask: bool = False,
        marker: int = -1,
    ) -> Encoded:
        """:meth:`encode` of texts already split into word pieces (e.g. windows of a long text)."""
        if not pieces:
            raise InvalidInputError("cannot encode an empty list of texts")
        head = [self.cls_id, marker] if marker >= 0 else [self.cls_id]
        budget = max_len - 1 - len(head) if special else max_len
        if budget < 1:
            raise InvalidInputError(f"max_len {max_len} leaves no room for tokens")
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        rows = []
        for p in pieces:
            body = list(p[:budget])
            if not special and not body:
                body = [self.unk_id]  # every row keeps a real token (a text with no word pieces)
            rows.append([*head, *body, self.sep_id] if special else body)
        width = max_len if pad_to_max_with_mask else max(max(len(r) for r in rows), 1)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            if pad_to_max_with_mask:
                ids[i, len(row) :] = self.mask_id
                mask[i, len(row) :] = 1
        return Encoded(ids, mask, lengths > budget, lengths)


class Preprocessor:
    """Turns query and passage texts into the id arrays a given model configuration expects."""

    def __init__(self, tokenizer: Tokenizer, config: ModelConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        arch = spec(config.arch)
        self._special = arch.special_tokens > 0
        self._augment = arch.query_augmentation and config.colbert_query_augmentation
        markers = (config.colbert_query_marker, config.colbert_passage_marker)
        self._q_marker, self._p_marker = markers if self._special else (-1, -1)

    def queries(self, texts: Sequence[str]) -> Encoded:
        return self.tokenizer.encode(
            texts, self.config.query_max_len, special=self._special, pad_to_max_with_mask=self._augment, marker=self._q_marker
        )

    def passages(self, texts: Sequence[str]) -> Encoded:
        return self.tokenizer.encode(texts, self.config.passage_max_len, special=self._special, marker=self._p_marker)

    def passage_pieces(self, pieces: Sequence[Sequence[int]]) -> Encoded:
        """:meth:`passages` of texts already split into word pieces (windows of longer texts)."""
        return self.tokenizer.encode_pieces(pieces, self.config.passage_max_len, special=self._special, marker=self._p_marker)

    @property
    def query_token_limit(self) -> int:
        """Word pieces a query may have: ``query_max_len`` less [CLS], [SEP] and a marker."""
        return self.config.query_max_len - (2 + (self._q_marker >= 0) if self._special else 0)

    @property
    def passage_token_limit(self) -> int:
        """Word pieces of a passage the model reads: ``passage_max_len`` less [CLS], [SEP] and a marker."""
        return self.config.passage_max_len - (2 + (self._p_marker >= 0) if self._special else 0)
