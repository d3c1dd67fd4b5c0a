"""The ``reranker`` command: one CLI for every step, from triples to serving.

Each command group is a module of thin adapters (arguments -> the package's functions):
:mod:`.data` (triples, bm25), :mod:`.train` (score, train, validate, init, pack), :mod:`.eval`
(evaluate), :mod:`.ensemble` (ensemble), :mod:`.fusion` (pick-fusion), :mod:`.first_stage`
(first-stage-lists, ship-fusion), :mod:`.calibrate` (calibrate), :mod:`.artifacts` (export,
import, index, store verify, recode), :mod:`.serve` (serve, rerank). Heavy
modules (torch) are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from reranker import __version__
from reranker.cli import artifacts, bench, calibrate, data, ensemble, first_stage, fusion, serve, train
from reranker.cli import eval as evaluation
from reranker.errors import RerankerError

GROUPS = (data, train, evaluation, ensemble, fusion, first_stage, calibrate, artifacts, serve, bench)
"""Command-group modules, in the order their commands are listed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reranker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"reranker {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a RerankerError is printed with the command's name and gives exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args))
    except RerankerError as exc:
        print(f"reranker {args.command}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
