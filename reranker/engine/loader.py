"""Building models from their specs: artifact (checksums verified), passage store (checked against
the artifact), ONNX Runtime sessions. The only engine module that opens files."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from reranker.artifact import Artifact
from reranker.calibration import Calibration
from reranker.data.folders import PASSAGES_FILES
from reranker.data.formats import read_passages
from reranker.engine.batcher import BatcherConfig
from reranker.engine.building import StoreBuild
from reranker.engine.config import EngineConfig, ModelSpec
from reranker.engine.prepare import Prepare
from reranker.engine.served import ServedModel, StatsSink
from reranker.errors import ArtifactError, ConfigError, RerankerError
from reranker.fusion import first_stage_rules, rule_for_first_stage
from reranker.machine import CpuFacts, cpu_facts, cross_encoder_serving
from reranker.runtime import OnnxScorer, RuntimeConfig
from reranker.store import PassageStore
from reranker.store.verify import verify_store
from reranker.tokenization import Preprocessor

log = logging.getLogger(__name__)


def open_scorer(artifact: Artifact, runtime: RuntimeConfig) -> OnnxScorer:
    """Every graph of ``artifact`` on the backend ``runtime`` names."""
    return OnnxScorer({g: artifact.graph_path(g) for g in artifact.spec.graphs}, runtime)


def open_model(spec: ModelSpec, cfg: EngineConfig, sink: StatsSink) -> ServedModel:
    """One served model; raises ArtifactError for a missing, corrupt or mismatched artifact or store."""
    artifact = Artifact.open(spec.artifact)
    collection = read_collection(spec.passages, spec.name) if spec.passages else None
    store, rebuild = None, False
    if spec.store:
        try:
            if cfg.verify_stores:
                verify_store(spec.store)  # every file's sha256, every centroid id, every vector finite
            store = PassageStore.open(spec.store, artifact)
        except ArtifactError as exc:
            if not spec.build_store:
                raise
            log.info(
                "model %s: no usable passage store (%s); building it in the background from %s, candidates by id are "
                "scored from their text meanwhile",
                spec.name,
                exc,
                spec.passages,
            )
            rebuild = True
    runtime = cfg.runtime
    if spec.backend == "auto":  # with the settings of the other backend left at theirs
        chosen = "onnxruntime" if runtime.provider == "cuda" else auto_backend(artifact)
        runtime = dataclasses.replace(runtime, backend=chosen, provider="cpu" if chosen == "openvino" else runtime.provider)
        runtime = runtime if chosen == "openvino" else dataclasses.replace(runtime, inference_precision="auto")
    elif spec.backend:
        runtime = dataclasses.replace(runtime, backend=spec.backend)
    scorer = open_scorer(artifact, runtime)
    prep = Preprocessor(artifact.tokenizer, artifact.config)
    prepare = Prepare(artifact.spec, prep, scorer, cfg.batching, store, spec.limits, collection)
    log.info(
        "model %s: %s %s artifact %s on %s, store %s",
        spec.name,
        artifact.arch,
        artifact.precision,
        artifact.directory,
        scorer.provider,
        f"{len(store)} passages" if store else "none",
    )
    by_kind = first_stage_rules(artifact.config.first_stage_fusion)
    fusion = rule_for_first_stage(by_kind, spec.first_stage, spec.name) if spec.first_stage else spec.fusion
    model = ServedModel(
        spec.name,
        prepare,
        spec.limits,
        cfg.batching,
        sink,
        precision=artifact.precision,
        fusion=fusion,
        first_stage_rules=by_kind,
        identity=artifact.checksum,
        calibration=Calibration.from_dict(artifact.config.calibration),
    )
    if rebuild:
        assert collection is not None  # ModelSpec: build_store needs passages
        if not artifact.spec.split:
            raise ConfigError(f"model {spec.name}: a {artifact.arch} model has no passage state to store; drop build_store")
        builder = Prepare(artifact.spec, prep, open_scorer(artifact, runtime), cfg.batching)  # its own sessions
        model.build = StoreBuild(
            artifact,
            collection,
            Path(spec.store),
            lambda texts, check: [(i.data, i.truncated) for i in builder.texts(texts, check)],
            on_progress=model.building,
            on_ready=model.attach_store,
            on_failed=model.build_failed,
            nice=cfg.worker_nice,
        )
        model.building(0.0)
    return model


def auto_backend(artifact: Artifact, facts: CpuFacts | None = None) -> Literal["onnxruntime", "openvino"]:
    """``backend = "auto"``: OpenVINO for a cross-encoder where this CPU's
    :func:`reranker.machine.cross_encoder_serving` row serves the artifact's precision on it, or for
    an fp32 one where the CPU has bf16 (OpenVINO's bf16 arithmetic); ONNX Runtime otherwise or when
    OpenVINO is not installed."""
    facts = facts or cpu_facts()
    choice = cross_encoder_serving(facts)
    row = artifact.precision == choice.precision and choice.backend == "openvino"
    fits = not artifact.spec.split and (row or (artifact.precision == "fp32" and facts.bf16_native))
    if fits and importlib.util.find_spec("openvino") is None:
        log.warning(
            "backend auto: %s would run on openvino, which is not installed (pip install 'reranker[openvino]')",
            artifact.directory,
        )
        fits = False
    return "openvino" if fits else "onnxruntime"


def read_collection(path: str, model: str) -> dict[str, str]:
    """Passage text by id from a data folder's ``passages.tsv(.gz)`` or such a file. ConfigError
    naming the model when there is none."""
    source = Path(path)
    if source.is_dir():
        source = next((source / name for name in PASSAGES_FILES if (source / name).is_file()), source / PASSAGES_FILES[0])
    try:
        texts = read_passages(source)
    except (RerankerError, OSError) as exc:
        raise ConfigError(
            f"model {model}: passages {path} cannot be read ({exc}); give a folder with {' or '.join(PASSAGES_FILES)} or the file"
        ) from exc
    if not texts:
        raise ConfigError(f"model {model}: passages {path} holds no passages")
    return texts


class PassageEncoder:
    """Passage texts -> (state, truncated) per text, as the engine's pre stage computes them
    (what :func:`reranker.store.build.build_store` takes as ``encode``)."""

    def __init__(self, artifact: Artifact, runtime: RuntimeConfig | None = None, batching: BatcherConfig | None = None) -> None:
        scorer = open_scorer(artifact, runtime or RuntimeConfig())
        self.prepare = Prepare(
            artifact.spec, Preprocessor(artifact.tokenizer, artifact.config), scorer, batching or BatcherConfig()
        )

    def __call__(self, texts: Sequence[str]) -> list[tuple[np.ndarray, bool]]:
        return [(item.data, item.truncated) for item in self.prepare.texts(texts)]


def passage_encoder(
    artifact: Artifact, runtime: RuntimeConfig | None = None, batching: BatcherConfig | None = None
) -> PassageEncoder:
    """The encoder a store build of ``artifact`` uses (the serving defaults unless given)."""
    return PassageEncoder(artifact, runtime, batching)
