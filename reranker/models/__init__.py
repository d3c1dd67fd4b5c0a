"""PyTorch ranking models: the BERT-cat teacher and the four efficient students."""

from __future__ import annotations

from reranker.config import ModelConfig
from reranker.models.base import Ranker, State, Tokens, pack_pairs
from reranker.models.bert_cat import BertCat
from reranker.models.bert_dot import BertDot
from reranker.models.colbert import ColBERT
from reranker.models.hf_cat import HfCat
from reranker.models.prett import PreTT
from reranker.models.tk import TK

MODEL_CLASSES: dict[str, type[Ranker]] = {cls.arch: cls for cls in (BertCat, BertDot, ColBERT, PreTT, TK, HfCat)}


def build_model(config: ModelConfig) -> Ranker:
    """A randomly initialised model of ``config.arch``."""
    return MODEL_CLASSES[config.arch](config)


__all__ = [
    "MODEL_CLASSES",
    "TK",
    "BertCat",
    "BertDot",
    "ColBERT",
    "HfCat",
    "PreTT",
    "Ranker",
    "State",
    "Tokens",
    "build_model",
    "pack_pairs",
]
