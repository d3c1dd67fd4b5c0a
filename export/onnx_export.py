"""Export a trained checkpoint to ONNX graphs, split so that passage-side work is done offline.

Graphs per architecture:

* ``bert_cat``: ``cross_encoder`` (query ids + passage ids -> score).
* every other architecture: ``query_encoder`` and ``passage_encoder`` (ids -> per-token state and
  its mask; the passage state is what the passage store keeps) and ``scorer`` (query state +
  passage state -> score): MaxSim for ColBERT, the dot product for BERT-dot, kernel pooling for
  TK, the joint upper layers for PreTT.

Every export verifies itself: ONNX Runtime against PyTorch on real text at several batch sizes
and lengths; beyond tolerance it fails and says by how much.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reranker.arch import spec
from reranker.artifact import ARTIFACT_KIND, GRAPH_IO, PRECISIONS, graphs_for
from reranker.errors import ArtifactError, ConfigError
from reranker.manifest import MANIFEST, sha256_file, write_manifest
from reranker.models import Ranker, State, Tokens
from reranker.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, Loaded, load_checkpoint, resolve_model_dir
from reranker.tokenization import TOKENIZER_FILE, Preprocessor

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "int8": None, "int8-static": None, "int8-query": None}
"""Allowed max |ORT - torch| relative to (1 + max |torch score|); int8 is reported, not bounded."""

SAMPLE_QUERIES = [
    "what is the lifespan of a flea",
    "how long does it take to become a certified public accountant in the united states",
    "cost of interior concrete flooring",
    "who is robert gray",
    "define visceral",
]
SAMPLE_PASSAGES = [
    "The life cycle of a flea can last anywhere from 20 days to an entire year.",
    "Fleas live up to a year, but their general lifespan depends on living conditions such as the availability "
    "of hosts, temperature and humidity. Adult fleas die within days without a blood meal, while pupae can wait "
    "for months in a cocoon until they sense vibrations, heat or carbon dioxide from a passing animal.",
    "Polished concrete floors cost between $2 and $12 per square foot installed.",
    "Robert Gray (1755-1806) was an American merchant sea-captain who is known for his achievements in "
    "connection with two trading voyages to the northern Pacific coast of North America. " * 4,
    "Visceral means relating to deep inward feelings rather than to the intellect.",
    "ok",
]


class CrossEncoderGraph(nn.Module):
    def __init__(self, model: Ranker) -> None:
        super().__init__()
        self.model = model

    def forward(self, q_ids: Tensor, q_mask: Tensor, p_ids: Tensor, p_mask: Tensor) -> Tensor:
        return self.model.score(Tokens(q_ids, q_mask), Tokens(p_ids, p_mask))


class EncoderGraph(nn.Module):
    def __init__(self, model: Ranker, side: str) -> None:
        super().__init__()
        self.model, self.side = model, side

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        encode = self.model.encode_query if self.side == "query" else self.model.encode_passages
        state = encode(Tokens(ids, mask))
        return state.vectors, state.mask


class ScorerGraph(nn.Module):
    def __init__(self, model: Ranker) -> None:
        super().__init__()
        self.model = model

    def forward(self, q_vectors: Tensor, q_mask: Tensor, p_vectors: Tensor, p_mask: Tensor) -> Tensor:
        return self.model.score_encoded(State(q_vectors, q_mask), State(p_vectors, p_mask))


def _graph_module(model: Ranker, name: str) -> nn.Module:
    if name == "cross_encoder":
        return CrossEncoderGraph(model)
    if name == "scorer":
        return ScorerGraph(model)
    return EncoderGraph(model, "query" if name == "query_encoder" else "passage")


def _example_inputs(loaded: Loaded, name: str) -> tuple[Tensor, ...]:
    prep = Preprocessor(loaded.tokenizer, loaded.config)
    q = prep.queries(SAMPLE_QUERIES[:2])
    p = prep.passages(SAMPLE_PASSAGES[:2])
    qt = (torch.from_numpy(q.input_ids), torch.from_numpy(q.attention_mask))
    pt = (torch.from_numpy(p.input_ids), torch.from_numpy(p.attention_mask))
    if name == "cross_encoder":
        return (*qt, *pt)
    if name == "query_encoder":
        return qt
    if name == "passage_encoder":
        return pt
    with torch.no_grad():
        qs = loaded.model.encode_query(Tokens(*qt))
        ps = loaded.model.encode_passages(Tokens(*pt))
    return (qs.vectors, qs.mask, ps.vectors, ps.mask)


def _export_graph(loaded: Loaded, name: str, path: Path, opset: int) -> None:
    inputs, outputs = GRAPH_IO[name]
    dynamic: dict[str, dict[int, str]] = {}
    for io_name in (*inputs, *outputs):
        axes = {0: "batch"}
        if io_name not in ("scores",):
            axes[1] = "q_len" if io_name.startswith("q_") else ("p_len" if io_name.startswith("p_") else "length")
        dynamic[io_name] = axes
    module = _graph_module(loaded.model, name).eval()
    with torch.no_grad():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module,
            _example_inputs(loaded, name),
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def graph_precision(precision: str, graph: str) -> str:
    """The precision one graph is converted to: ``int8-query`` is the query encoder in dynamic int8
    (the default ColBERT on DL19: -0.0013 to -0.0055 nDCG@10, docs/stores.md) and every other graph
    in fp32, so that the passage encoder, and the store built with it, stay those of fp32."""
    if precision == "int8-query":
        return "int8" if graph == "query_encoder" else "fp32"
    return precision


def _convert_precision(path: Path, precision: str, int8_exclude: str | None = None) -> None:
    import onnx

    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        onnx.save(model, str(path))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = path.with_suffix(".fp32.onnx")
        path.replace(tmp)
        # per-channel weight scales: on MiniLM ColBERT token vectors, mean cosine to fp32 0.992 vs 0.953 per tensor
        exclude: list[str] = []
        if int8_exclude:  # nodes kept in fp32, e.g. the feed-forward outputs that carry activation outliers
            pattern = re.compile(int8_exclude)
            exclude = [
                n.name
                for n in onnx.load(str(tmp), load_external_data=False).graph.node
                if n.op_type == "MatMul" and pattern.search(n.name)
            ]
            if not exclude:
                raise ConfigError(f"--int8-exclude {int8_exclude!r} matches no MatMul node of {path.name}")
        quantize_dynamic(
            str(tmp),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights: ONNX Runtime's u8s8 kernels saturate on CPUs without VNNI (AVX2, AVX-512
            # without VNNI); measured on an AVX2 EPYC, imported RoBERTa / DeBERTa cross-encoders: max
            # |int8 - fp32| 0.99 -> 0.19 and 2.44 -> 0.40 (score spreads 2.3 and 5.1)
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=exclude,
        )
        tmp.unlink()


@dataclass
class Parity:
    """Max |ORT - torch| per compared output, on the sample texts."""

    figures: dict[str, float]
    score_scale: float
    precision: str

    def check(self) -> None:
        tol = TOLERANCE[self.precision]
        worst = self.figures.get("scores_max_abs_diff", 0.0)
        if not np.isfinite(worst):
            raise ArtifactError(f"ONNX scores are not finite ({self.precision})")
        if tol is not None and worst > tol * (1.0 + self.score_scale):
            raise ArtifactError(
                f"ONNX Runtime disagrees with PyTorch: max |score diff| {worst:.3g} exceeds the {self.precision} "
                f"tolerance {tol * (1.0 + self.score_scale):.3g} (= {tol} x (1 + max |score| {self.score_scale:.3g}))"
            )


def verify_parity(loaded: Loaded, artifact_dir: Path, precision: str, batch_sizes: Sequence[int] = (1, 3, 6)) -> Parity:
    """Score sample texts at several batch sizes with ORT and with PyTorch and compare."""
    from reranker.runtime.config import RuntimeConfig
    from reranker.runtime.sessions import Graph

    prep = Preprocessor(loaded.tokenizer, loaded.config)
    cpu = RuntimeConfig(provider="cpu")
    sessions = {g: Graph(artifact_dir / f"{g}.onnx", cpu) for g in graphs_for(loaded.config.arch)}
    figures: dict[str, float] = {}
    scale = 0.0

    def note(key: str, a: np.ndarray, b: np.ndarray) -> None:
        figures[key] = max(figures.get(key, 0.0), float(np.max(np.abs(a.astype(np.float64) - b))))

    for n in batch_sizes:
        queries = [SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)] for i in range(n)]
        passages = [SAMPLE_PASSAGES[(i * 2 + n) % len(SAMPLE_PASSAGES)] for i in range(n)]
        q, p = prep.queries(queries), prep.passages(passages)
        qt = Tokens(torch.from_numpy(q.input_ids), torch.from_numpy(q.attention_mask))
        pt = Tokens(torch.from_numpy(p.input_ids), torch.from_numpy(p.attention_mask))
        with torch.no_grad():
            expected = loaded.model.score(qt, pt).numpy()
        scale = max(scale, float(np.max(np.abs(expected))))
        if not spec(loaded.config.arch).split:
            got = sessions["cross_encoder"].run(
                {"q_ids": q.input_ids, "q_mask": q.attention_mask, "p_ids": p.input_ids, "p_mask": p.attention_mask}
            )[0]
        else:
            qv, qm = sessions["query_encoder"].run({"ids": q.input_ids, "mask": q.attention_mask})
            pv, pm = sessions["passage_encoder"].run({"ids": p.input_ids, "mask": p.attention_mask})
            with torch.no_grad():
                tq, tp = loaded.model.encode_query(qt), loaded.model.encode_passages(pt)
            note("query_encoder_max_abs_diff", qv, tq.vectors.numpy())
            note("passage_encoder_max_abs_diff", pv, tp.vectors.numpy())
            got = sessions["scorer"].run({"q_vectors": qv, "q_mask": qm, "p_vectors": pv, "p_mask": pm})[0]
            with torch.no_grad():
                alone = sessions["scorer"].run(
                    {
                        "q_vectors": tq.vectors.numpy(),
                        "q_mask": tq.mask.numpy(),
                        "p_vectors": tp.vectors.numpy(),
                        "p_mask": tp.mask.numpy(),
                    }
                )[0]
            note("scorer_max_abs_diff", alone, expected)
        note("scores_max_abs_diff", got, expected)
    return Parity(figures, scale, precision)


def export_model(
    model_dir: str | Path,
    out: str | Path,
    *,
    precision: str = "fp32",
    opset: int = OPSET,
    int8_exclude: str | None = None,
    calibration: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Write an artifact directory (graphs, config, tokenizer, manifest) and verify it; returns the manifest.

    ``calibration``: (query, passage) texts for ``int8-static`` (see :mod:`reranker_export.quantize`).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model_dir = resolve_model_dir(model_dir)
    loaded = load_checkpoint(model_dir)
    loaded.model.eval()
    out = Path(out)
    graphs = graphs_for(loaded.config.arch)
    if precision == "int8-query" and "query_encoder" not in graphs:
        raise ConfigError(f"int8-query quantises a split model's query encoder; a {loaded.config.arch} model has none")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp_name:
        tmp = Path(tmp_name)
        for name in graphs:
            log.info("exporting %s graph %s (%s)", loaded.config.arch, name, precision)
            _export_graph(loaded, name, tmp / f"{name}.onnx", opset)
            _convert_precision(tmp / f"{name}.onnx", graph_precision(precision, name), int8_exclude)
        quantized = None
        if precision == "int8-static":
            from reranker_export.quantize import quantize_static

            quantized = quantize_static(tmp, graphs, Preprocessor(loaded.tokenizer, loaded.config), calibration, int8_exclude)
        shutil.copy(Path(model_dir) / CONFIG_FILE, tmp / CONFIG_FILE)
        shutil.copy(Path(model_dir) / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        parity = verify_parity(loaded, tmp, precision)
        parity.check()
        cfg = loaded.config
        state_dim = cfg.colbert_dim or cfg.dot_dense_dim or cfg.encoder.hidden_size
        source = json.loads((Path(model_dir) / MANIFEST).read_text())
        info = {
            "arch": cfg.arch,
            "precision": precision,
            "opset": opset,
            "graphs": list(graphs),
            "int8_exclude": int8_exclude if precision.startswith("int8") else None,
            "int8_reduce_range": True if precision in ("int8", "int8-query") else None,
            "quantization": quantized,
            "query_max_len": cfg.query_max_len,
            "passage_max_len": cfg.passage_max_len,
            "hidden_size": cfg.encoder.hidden_size,
            "state_dim": state_dim if spec(cfg.arch).split else None,
            "layers": cfg.encoder.num_layers,
            "checkpoint": {
                "path": Path(model_dir).resolve().name,
                "manifest_sha256": sha256_file(Path(model_dir) / MANIFEST),
                "weights_sha256": sha256_file(Path(model_dir) / WEIGHTS_FILE),
                "base_model": source.get("base_model"),
                "steps": source.get("steps"),
            },
            "parity": {**parity.figures, "max_abs_score": parity.score_scale, "tolerance": TOLERANCE[precision]},
        }
        write_manifest(tmp, ARTIFACT_KIND, info, [f"{g}.onnx" for g in graphs] + [CONFIG_FILE, TOKENIZER_FILE])
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    return json.loads((out / MANIFEST).read_text())
