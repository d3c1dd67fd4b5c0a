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
