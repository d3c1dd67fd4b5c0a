"""One table of what each architecture is: every layer asks it instead of comparing names.

Adding an architecture means one row here, one model class in ``reranker/models`` and, if it
has new graphs, their export; the engine, the store and the server read the row.

>>> spec("colbert").split, spec("bert_cat").graphs
(True, ('cross_encoder',))
>>> spec("tk").special_tokens, spec("bert_dot").state
(0, 'vector')
>>> spec("hf_cat").trainable, "hf_cat" in ARCHES
(False, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reranker.errors import ConfigError

Arch = Literal["bert_cat", "bert_dot", "colbert", "prett", "tk", "hf_cat"]
"""The architecture names a model configuration may carry."""

CROSS_GRAPHS = ("cross_encoder",)
SPLIT_GRAPHS = ("query_encoder", "passage_encoder", "scorer")


@dataclass(frozen=True)
class ArchSpec:
    """What the rest of the code needs to know about one architecture."""

    name: str
    """The name in ``config.json`` and on the command line."""
    label: str
    """How people write it (tables, logs)."""
    split: bool
    """Passage-side work can be precomputed (query and passage are encoded apart, then scored)."""
    graphs: tuple[str, ...]
    """The ONNX graphs of an exported artifact, in export order."""
    identity_graph: str
    """The graph whose sha256 identifies an artifact (a passage store is bound to it)."""
    special_tokens: int
    """Special tokens around each tokenised text: 2 for ``[CLS] ... [SEP]``, 0 for bare word pieces."""
    query_augmentation: bool
    """Queries may be padded with [MASK] tokens that score (when the config asks for it; BERT attends to
    them unless ``colbert_unattended_id`` names the [MASK] id), and the config may add marker tokens
    and a passage skiplist (imported Stanford ColBERT / PyLate checkpoints)."""
    packs_pair: bool
    """Query and passage run through BERT as one packed sequence (their lengths must fit together)."""
    layer_split: bool
    """The encoder stack runs in two parts (``prett_split_layer``)."""
    state: Literal["none", "vector", "tokens"]
    """Stored passage state: nothing, one (1, dim) vector, or (tokens, dim) token vectors."""
    score_kind: str
    """What the score is (shown by ListModels)."""
    store_codec: tuple[str, int] = ("float16", 0)
    """Default codec of a passage store (``reranker index``, the served default): name and residual
    bits per dimension, the smallest measured within 0.005 nDCG@10 of fp16 (README, compressed stores)."""
    maxsim: bool = False
    """The scorer is MaxSim over the states (sum over query positions of the best dot product): on CPU
    the engine scores unpadded states with one matrix product per query (:mod:`reranker.runtime.maxsim`)
    instead of the padded scorer graph."""
    trainable: bool = True
    """Built and trained here (``reranker init`` / ``train``); False: only imported (``reranker import``)."""


ARCH_SPECS: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec(
            "bert_cat",
            "BERT-cat",
            False,
            CROSS_GRAPHS,
            "cross_encoder",
            2,
            False,
            True,
            False,
            "none",
            "raw logit of a cross-encoder",
        ),
        ArchSpec(
            "bert_dot",
            "BERT-dot",
            True,
            SPLIT_GRAPHS,
            "passage_encoder",
            2,
            False,
            False,
            False,
            "vector",
            "dot product of query and passage vectors",
        ),
        ArchSpec(
            "colbert",
            "ColBERT",
            True,
            SPLIT_GRAPHS,
            "passage_encoder",
            2,
            True,
            False,
            False,
            "tokens",
            "MaxSim: sum over query tokens of the best cosine",
            store_codec=("residual", 1),
            maxsim=True,
        ),
        ArchSpec(
            "prett",
            "PreTT",
            True,
            SPLIT_GRAPHS,
            "passage_encoder",
            2,
            False,
            True,
            True,
            "tokens",
            "raw logit of the joint upper layers",
            store_codec=("residual", 4),
        ),
        ArchSpec(
            "tk",
            "TK",
            True,
            SPLIT_GRAPHS,
            "passage_encoder",
            0,
            False,
            False,
            False,
            "tokens",
            "kernel-pooling score",
            store_codec=("residual", 2),
        ),
        ArchSpec(
            "hf_cat",
            "cross-encoder (transformers)",
            False,
            CROSS_GRAPHS,
            "cross_encoder",
            0,
            False,
            True,
            False,
            "none",
            "logit of an imported cross-encoder (any transformers encoder family)",
            trainable=False,
        ),
    )
}
"""Every architecture, by name."""

ARCHES: tuple[str, ...] = tuple(name for name, s in ARCH_SPECS.items() if s.trainable)
"""The architectures this project builds and trains, in table order (``hf_cat`` is imported only)."""


def spec(arch: str) -> ArchSpec:
    """The row of ``arch``; :class:`ConfigError` names the allowed ones otherwise."""
    try:
        return ARCH_SPECS[arch]
    except KeyError:
        raise ConfigError(f"arch must be one of {', '.join(ARCH_SPECS)}; got {arch!r}") from None
