"""``reranker bench NAME [ARGS...]``: runs one of the product's benchmarks (``benchmarks/NAME.py``)
as ``python -m benchmarks.NAME ARGS`` would. The benchmarks ship with the source repository, not
with the package, so the command runs from the root of a checkout."""

from __future__ import annotations

import argparse
import importlib
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from reranker.errors import ConfigError


def benchmarks() -> dict[str, str]:
    """Name -> what it measures, from ``benchmarks.BENCHMARKS``.

    Raises:
        ConfigError: the ``benchmarks`` package is not importable (not run from a checkout's root).
    """
    root = Path.cwd()
    if (root / "benchmarks" / "__init__.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))  # what `python -m` does: the checkout's root comes first
    try:
        module = importlib.import_module("benchmarks")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the benchmarks ship with the source repository, not with the installed package: run "
            "`reranker bench` from the root of a checkout (where benchmarks/ is)"
        ) from exc
    registry = getattr(module, "BENCHMARKS", None)
    if not isinstance(registry, dict):
        raise ConfigError(f"{module.__name__} is not this project's benchmarks package (no BENCHMARKS table)")
    return dict(registry)


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    """Run benchmark ``name`` (``-`` or ``_`` alike) with ``argv`` as its arguments; its exit status.

    Raises:
        ConfigError: unknown name (the message lists the allowed ones), or no checkout (see :func:`benchmarks`).
    """
    registry = benchmarks()
    module = name.replace("-", "_")
    if module not in registry:
        raise ConfigError(f"unknown benchmark {name!r}; allowed: {', '.join(sorted(registry))}")
    saved = sys.argv
    sys.argv = [f"benchmarks.{module}", *argv]
    try:
        runpy.run_module(f"benchmarks.{module}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, what in sorted(benchmarks().items()):
            print(f"{name:<18} {what}")
        print("\nreranker bench NAME --help   lists a benchmark's options; the studies are in studies/")
        return 0
    return run_benchmark(args.name, args.args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the bench command."""
    p = sub.add_parser(
        "bench",
        help="run one of the product's benchmarks (from a checkout's root); without NAME, list them",
        description="Runs benchmarks/NAME.py with the arguments that follow NAME, as "
        "`python -m benchmarks.NAME ARGS` does. Each writes one JSON record (--json FILE) stating the "
        "machine beside its figures.",
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="the benchmark; omit to list them")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own arguments (see NAME --help)")
    p.set_defaults(func=cmd_bench)
