"""Static int8 quantisation of exported graphs (``--precision int8-static``), with NNCF.

Post-training quantisation in QDQ form: int8 weights with per-channel scales and int8
activations with scales fixed from calibration pairs, SmoothQuant on the transformer MatMuls
(Xiao et al., arXiv 2211.10438) and bias correction: NNCF's ``ModelType.TRANSFORMER`` recipe.
The result is ordinary ONNX: OpenVINO runs it with int8 kernels (the ``openvino`` backend),
ONNX Runtime runs it too (more slowly on CPUs: its dynamic int8 is the ``int8`` precision).

Calibration pairs come from a data folder's first-stage run (the top ``per_query`` candidates of
each query): use MS MARCO dev or training queries, never the test set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reranker.errors import ConfigError
from reranker.tokenization import Preprocessor

log = logging.getLogger(__name__)
DEFAULT_PAIRS = 300
"""Calibration pairs: 300 MS MARCO dev pairs kept the BERT-cat teacher's DL19 nDCG@10 within 0.001 of fp32."""


def calibration_pairs(
    folder: str | Path, n: int = DEFAULT_PAIRS, per_query: int = 3, run: str | None = None
) -> list[tuple[str, str]]:
    """(query, passage) texts: the top ``per_query`` candidates of the folder's ``run`` (default: its
    first), queries in id order, until ``n`` pairs. Raises ConfigError for a folder without enough."""
    from reranker.data import DataFolder

    data = DataFolder.open(Path(folder))
    names = data.available_runs()
    if not names:
        raise ConfigError(f"{folder}: no run to take calibration candidates from (a <name>.run file or qrels)")
    ranked = data.run(run or names[0])
    pairs = [
        (data.queries[q], data.passages[p])
        for q in sorted(ranked)
        if q in data.queries
        for p, _ in ranked[q][:per_query]
        if p in data.passages
    ]
    if len(pairs) < min(n, 16):
        raise ConfigError(f"{folder}: only {len(pairs)} calibration pairs (want {n}; at least 16)")
    return pairs[:n]


def _feeds(
    graphs: Sequence[str], prep: Preprocessor, pairs: Sequence[tuple[str, str]], dir_: Path
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per graph, one feed (batch of 1) per pair, each pair tokenised once; the scorer's states come
    from the fp32 encoder graphs in ``dir_``."""
    from reranker.runtime.config import RuntimeConfig
    from reranker.runtime.sessions import Graph

    encoders = (
        {side: Graph(dir_ / f"{side}_encoder.onnx", RuntimeConfig(provider="cpu")) for side in ("query", "passage")}
        if "scorer" in graphs
        else {}
    )
    feeds: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in graphs}
    for query, passage in pairs:
        q, p = prep.queries([query]), prep.passages([passage])
        qt, pt = {"ids": q.input_ids, "mask": q.attention_mask}, {"ids": p.input_ids, "mask": p.attention_mask}
        by_graph = {"query_encoder": qt, "passage_encoder": pt}
        if "cross_encoder" in feeds:
            by_graph["cross_encoder"] = {
                "q_ids": q.input_ids,
                "q_mask": q.attention_mask,
                "p_ids": p.input_ids,
                "p_mask": p.attention_mask,
            }
        if encoders:
            qv, qm = encoders["query"].run(qt)
            pv, pm = encoders["passage"].run(pt)
            by_graph["scorer"] = {"q_vectors": qv, "q_mask": qm, "p_vectors": pv, "p_mask": pm}
        for g in graphs:
            feeds[g].append(by_graph[g])
    return feeds


def quantize_static(
    dir_: Path, graphs: Sequence[str], prep: Preprocessor, pairs: Sequence[tuple[str, str]], exclude: str | None = None
) -> dict:
    """Replace each fp32 ``{graph}.onnx`` in ``dir_`` by its static int8 QDQ graph; returns what the
    manifest records (library, version, recipe, number of calibration pairs). ``exclude``: a regex of
    node names left unquantised (e.g. the feed-forward outputs, ``layer\\.\\d+/output/dense``)."""
    try:
        import nncf
        import onnx
    except ImportError as exc:
        raise ConfigError("--precision int8-static needs nncf and onnx: pip install 'reranker[train]'") from exc
    if not pairs:
        raise ConfigError("--precision int8-static needs calibration pairs (reranker export --calibration DATA_FOLDER)")
    feeds = _feeds(graphs, prep, pairs, dir_)  # every feed before any graph changes
    for g in graphs:
        path = dir_ / f"{g}.onnx"
        log.info("int8-static: calibrating %s on %d pairs", g, len(pairs))
        model = onnx.load(str(path))
        scope = {}
        if exclude:
            matched = [n.name for n in model.graph.node if n.op_type == "MatMul" and re.search(exclude, n.name)]
            if not matched:
                raise ConfigError(f"--int8-exclude {exclude!r} matches no MatMul node of {path.name}")
            scope = {"ignored_scope": nncf.IgnoredScope(names=matched)}
        model = nncf.quantize(
            model, nncf.Dataset(feeds[g]), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds[g]), **scope
        )
        onnx.save(model, str(path))
    return {
        "library": "nncf",
        "version": nncf.__version__,
        "recipe": "post-training static int8, QDQ, ModelType.TRANSFORMER (per-channel weights, SmoothQuant, bias correction)",
        "pairs": len(pairs),
        "excluded": exclude,
    }
