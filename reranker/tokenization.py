"""Word-piece tokenisation into fixed-layout id arrays (numpy; no torch).

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

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers
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


class Tokenizer:
    """A BERT word-piece tokenizer with the special-token layout every model here uses."""

    def __init__(self, hf: HFTokenizer) -> None:
        hf.no_truncation()
        hf.no_padding()
        # User text is text: "[MASK]", "[SEP]", "[PAD]" or "[CLS]" typed in a query or passage become
        # the word pieces of "[", "mask", "]" (as "[mask]" would), never the control tokens the models
        # are built around. The only special ids in an encoding are the ones placed below.
        hf.encode_special_tokens = True
        self.hf = hf
        found = {name: hf.token_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")}
        ids = {name: value for name, value in found.items() if value is not None}
        if len(ids) != len(found):
            raise ArtifactError(f"tokenizer lacks the BERT special tokens {sorted(set(found) - set(ids))}")
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]
        self.pad_id, self.mask_id, self.unk_id = ids["[PAD]"], ids["[MASK]"], ids["[UNK]"]

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
        head = [self.cls_id, marker] if marker >= 0 else [self.cls_id]
        budget = max_len - 1 - len(head) if special else max_len
        if budget < 1:
            raise InvalidInputError(f"max_len {max_len} leaves no room for tokens")
        pieces = self.word_pieces(texts)
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        rows = []
        for p in pieces:
            body = p[:budget]
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

    @property
    def query_token_limit(self) -> int:
        """Word pieces a query may have: ``query_max_len`` less [CLS], [SEP] and a marker."""
        return self.config.query_max_len - (2 + (self._q_marker >= 0) if self._special else 0)

    @property
    def passage_token_limit(self) -> int:
        """Word pieces of a passage the model reads: ``passage_max_len`` less [CLS], [SEP] and a marker."""
        return self.config.passage_max_len - (2 + (self._p_marker >= 0) if self._special else 0)
