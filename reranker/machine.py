"""What the CPU this process runs on can do, read from ``/proc/cpuinfo`` (numpy- and torch-free).

Precision and backend choices that depend on the CPU ask here, and every measurement records
:func:`cpu_facts` beside its figures: the same command is 13x slower in bf16 on an AVX2-only CPU
(emulated) than on one with AVX-512 bf16.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
"""The instruction-set flags that change which precision is fast (reported in this order)."""


@dataclass(frozen=True)
class CpuFacts:
    """The CPU model, its core count and the flags of :data:`FLAGS_OF_INTEREST` it has."""

    model: str
    cores: int
    flags: tuple[str, ...]

    @property
    def bf16_native(self) -> bool:
        """True when bf16 matrix products run in hardware (AVX-512 bf16 or AMX); elsewhere torch
        emulates them and bf16 training is an order of magnitude slower than fp32."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def int8_native(self) -> bool:
        """True when int8 dot products have VNNI (or AMX) instructions."""
        return any(f in self.flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "flags": list(self.flags)}

    def describe(self) -> str:
        """One line for a report, e.g. ``AMD EPYC, 2 cores, avx2 avx512f avx512_bf16``."""
        return f"{self.model}, {self.cores} cores, {' '.join(self.flags) or 'no AVX2'}"


def parse_cpuinfo(text: str, cores: int | None = None) -> CpuFacts:
    """:class:`CpuFacts` from the text of ``/proc/cpuinfo``.

    >>> parse_cpuinfo("model name\\t: AMD EPYC\\nflags\\t\\t: fpu avx2 avx512_bf16\\n", cores=2).describe()
    'AMD EPYC, 2 cores, avx2 avx512_bf16'
    """
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuFacts(
        model or platform.processor() or "unknown",
        cores or os.cpu_count() or 1,
        tuple(f for f in FLAGS_OF_INTEREST if f in flags),
    )


def cpu_facts() -> CpuFacts:
    """The facts of this machine's CPU (model 'unknown' and no flags where /proc/cpuinfo is missing)."""
    text = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
    return parse_cpuinfo(text, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)


def auto_precision(device: str = "cpu") -> str:
    """``bf16`` on CUDA and on CPUs with native bf16, ``fp32`` elsewhere (the ``auto`` precision)."""
    if device.startswith("cuda") or cpu_facts().bf16_native:
        return "bf16"
    return "fp32"


FFN_OUTPUTS = r"layer\.\d+/output/dense"
"""The feed-forward output MatMuls of a BERT encoder (``--int8-exclude``): their inputs carry the
activation outliers after GELU, and dynamic int8 loses most of its quality there."""


@dataclass(frozen=True)
class ServingChoice:
    """How to serve a cross-encoder (the BERT-cat teacher) on one kind of CPU: an artifact precision
    (``reranker export --precision``), the MatMuls it keeps in fp32 (``--int8-exclude``, a regex of
    node names; None = none), a runtime backend, and the measurement behind the choice."""

    precision: str
    backend: str
    reason: str
    int8_exclude: str | None = None


@dataclass(frozen=True)
class ExportChoice:
    """What ``reranker export --precision auto`` writes: the precision, the MatMuls kept in fp32
    (``--int8-exclude``; None = none) and why, in one line."""

    precision: str
    int8_exclude: str | None
    why: str


CROSS_ENCODER_SERVING = {
    "int8": ServingChoice(
        "int8-static",
        "openvino",
        "int8 dot products in hardware (VNNI or AMX): static int8 on OpenVINO ran 202.6 pairs/s against 70.1 for "
        "fp32 on ONNX Runtime, DL19 nDCG@10 -0.0002 (AMD Zen 4 with AVX-512 VNNI and bf16, studies/peers)",
    ),
    "bf16": ServingChoice(
        "fp32",
        "openvino",
        "bf16 in hardware without int8 dot products: OpenVINO runs the fp32 artifact in bf16, 2.01x fp32 on ONNX "
        "Runtime at DL19 nDCG@10 +0.0002 (AMD Zen 4, studies/peers)",
    ),
    "avx2": ServingChoice(
        "int8",
        "onnxruntime",
        "AVX2 only (no VNNI, no bf16): ONNX Runtime's dynamic int8 with the feed-forward outputs in fp32 ran "
        "81.9 pairs/s against 61.1 for fp32 (1.34x) at DL19 nDCG@10 +0.0022; all-int8 ran 96.0 but lost 0.0095, "
        "static int8 on OpenVINO was slower than fp32 (AMD EPYC, AVX2 only, studies/peers)",
        FFN_OUTPUTS,
    ),
    "other": ServingChoice(
        "fp32",
        "onnxruntime",
        "no x86 flag that was measured (ARM, or no /proc/cpuinfo): fp32 on ONNX Runtime, the reference every "
        "other row is measured against",
    ),
}
"""The fastest measured way to serve the BERT-cat teacher within 0.005 nDCG@10 of fp32, by the CPU's
kind (:func:`cross_encoder_serving` picks the row from the flags)."""


def cross_encoder_serving(facts: CpuFacts | None = None) -> ServingChoice:
    """The :data:`CROSS_ENCODER_SERVING` row for ``facts`` (default: this CPU's)."""
    facts = facts or cpu_facts()
    if facts.int8_native:
        return CROSS_ENCODER_SERVING["int8"]
    if facts.bf16_native:
        return CROSS_ENCODER_SERVING["bf16"]
    return CROSS_ENCODER_SERVING["avx2" if "avx2" in facts.flags else "other"]


def export_precision(
    model: Path, calibrated: bool, facts: CpuFacts | None = None, int8_exclude: str | None = None
) -> ExportChoice:
    """``reranker export --precision auto`` of the model directory ``model``: fp32 for split models
    (students); for a cross-encoder the precision and fp32 MatMuls of this CPU's
    :func:`cross_encoder_serving` row (a row that keeps MatMuls in fp32 by name applies to BERT-cat
    only; imported cross-encoders then stay fp32). ``int8_exclude``: the user's ``--int8-exclude``,
    which replaces the row's. Raises ConfigError when the row is int8-static and no calibration data
    was given, or when ``int8_exclude`` is given and the choice is not an int8 precision."""
    from reranker.arch import spec
    from reranker.config import ModelConfig
    from reranker.errors import ConfigError

    arch = spec(ModelConfig.load(Path(model) / "config.json").arch)
    if arch.split:
        split = ExportChoice(
            "fp32", None, "fp32 for a split model: its query encoder and scorer are small, its store is built once"
        )
        return _no_exclusion(split, int8_exclude)
    facts = facts or cpu_facts()
    choice = cross_encoder_serving(facts)
    if choice.int8_exclude and not arch.trainable:  # imported: node names and outliers of other families, not measured
        why = f"fp32 ({facts.describe()}: the measured row, {choice.precision} with {choice.int8_exclude} in fp32, "
        return _no_exclusion(ExportChoice("fp32", None, why + f"is for BERT-cat; a {arch.name} model keeps fp32)"), int8_exclude)
    if not choice.precision.startswith("int8"):
        _no_exclusion(ExportChoice(choice.precision, None, f"{facts.describe()}: {choice.reason}"), int8_exclude)
    if choice.precision == "int8-static" and not calibrated:
        raise ConfigError(
            f"--precision auto picks int8-static on this CPU ({facts.describe()}: {choice.reason}); give "
            "--calibration DATA_FOLDER (e.g. data/msmarco-passage/msmarco-dev-small-600), or name a precision"
        )
    exclude = int8_exclude if int8_exclude is not None else choice.int8_exclude
    kept = f", {exclude} kept in fp32" if exclude else ""
    return ExportChoice(
        choice.precision, exclude, f"{choice.precision}{kept}, to serve on {choice.backend} ({facts.describe()}: {choice.reason})"
    )


def _no_exclusion(choice: ExportChoice, int8_exclude: str | None) -> ExportChoice:
    """``choice`` (not an int8 precision); ConfigError when the user gave ``--int8-exclude`` for it."""
    from reranker.errors import ConfigError

    if int8_exclude:
        raise ConfigError(f"--int8-exclude is for int8 precisions; --precision auto picks {choice.precision} here ({choice.why})")
    return choice
