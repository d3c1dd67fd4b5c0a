"""ONNX artifact directories: what graphs each architecture has, and opening one safely (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reranker.arch import ArchSpec, spec
from reranker.config import ModelConfig
from reranker.errors import ArtifactError
from reranker.manifest import verify_manifest
from reranker.tokenization import Tokenizer

ARTIFACT_KIND = "reranker-onnx"
PRECISIONS = ("fp32", "fp16", "int8", "int8-static", "int8-query")
"""fp32; fp16 (GPUs); int8: dynamic (ONNX Runtime's quantize_dynamic, weights int8, activation scales per
batch); int8-static: QDQ with calibrated activation scales (NNCF; fastest on the openvino backend)."""
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cross_encoder": (("q_ids", "q_mask", "p_ids", "p_mask"), ("scores",)),
    "query_encoder": (("ids", "mask"), ("vectors", "vector_mask")),
    "passage_encoder": (("ids", "mask"), ("vectors", "vector_mask")),
    "scorer": (("q_vectors", "q_mask", "p_vectors", "p_mask"), ("scores",)),
}
"""graph name -> (input names, output names)."""


def graphs_for(arch: str) -> tuple[str, ...]:
    """The graph names of an ``arch`` artifact (from the architecture table)."""
    return spec(arch).graphs


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory: its manifest, model config, tokenizer and graph paths."""

    directory: Path
    manifest: dict[str, Any]
    config: ModelConfig
    tokenizer: Tokenizer

    @classmethod
    def open(cls, directory: str | Path, *, verify: bool = True) -> Artifact:
        """Open an artifact; with ``verify`` every manifest-listed file's sha256 is checked."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"artifact directory {directory} does not exist")
        manifest = verify_manifest(directory, ARTIFACT_KIND, checksums=verify)
        listed = set(manifest.get("files", {}))
        needed = {f"{g}.onnx" for g in graphs_for(manifest["arch"])} | {"config.json", "tokenizer.json"}
        if not needed <= listed:
            raise ArtifactError(f"{directory}: the manifest does not list {sorted(needed - listed)}")
        config = ModelConfig.load(directory / "config.json")
        if config.arch != manifest["arch"]:
            raise ArtifactError(f"{directory}: config.json says {config.arch}, the manifest {manifest['arch']}")
        return cls(directory, manifest, config, Tokenizer.from_dir(directory))

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def spec(self) -> ArchSpec:
        """The architecture's row of :data:`reranker.arch.ARCH_SPECS`."""
        return spec(self.config.arch)

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def checksum(self) -> str:
        """Identity of the artifact: the sha256 of its passage encoder (or cross-encoder) graph."""
        return str(self.manifest["files"][f"{self.spec.identity_graph}.onnx"]["sha256"])

    def graph_path(self, name: str) -> Path:
        if name not in graphs_for(self.arch):
            raise ArtifactError(f"a {self.arch} artifact has no {name} graph; it has {graphs_for(self.arch)}")
        return self.directory / f"{name}.onnx"
