"""Helpers the command adapters share: data-folder options, torch threads and device, model loading.

Heavy modules (torch) are imported inside the helpers that need them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from reranker.errors import RerankerError

log = logging.getLogger("reranker")


def data_arg(p: argparse.ArgumentParser, many: bool = True) -> None:
    """``--data``: one data folder, or repeatable."""
    p.add_argument(
        "--data",
        required=True,
        action="append" if many else "store",
        type=Path,
        help="a data folder (queries.tsv, passages.tsv.gz, qrels.txt, NAME.run)" + ("; repeat for several" if many else ""),
    )


def torch_args(p: argparse.ArgumentParser) -> None:
    """``--torch-threads`` (alias ``--threads``) and ``--device`` of the commands that run PyTorch."""
    p.add_argument(
        "--torch-threads",
        "--threads",
        dest="torch_threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads (default: torch's choice)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (auto: CUDA if any)")


def set_torch_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def torch_device(name: str) -> Any:
    """A torch device; ``auto`` is CUDA when torch sees one. RerankerError when cuda is asked for but absent."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RerankerError("--device cuda was asked for, but torch sees no CUDA device")
    log.info("torch device: %s", name)
    return torch.device(name)


def load_member(spec: str, args: argparse.Namespace) -> Any:
    """A teacher member (a reranker checkpoint or a Hugging Face spec, see reranker.teachers.members)
    with the command's device, precision, torch threads and batch size."""
    from reranker.teachers.members import load_member as load

    device = str(torch_device(args.device))
    return load(
        spec,
        device=device,
        bf16=resolve_precision(args.precision, device) == "bf16",
        threads=args.torch_threads,
        batch_size=args.batch_size,
    )


def precision_arg(p: argparse.ArgumentParser) -> None:
    """``--precision`` of the commands that score with teacher members."""
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="fp32",
        help="inference precision of torch and Hugging Face models (bf16: autocast; fast on CPUs with "
        "AVX-512 bf16, emulated and slow on AVX2-only CPUs; auto: bf16 only where it is native)",
    )


def resolve_precision(name: str, device: str) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for ``device`` on this machine (reranker.machine.auto_precision)."""
    from reranker.machine import auto_precision

    return auto_precision(device) if name == "auto" else name


def load_model(spec: str, device: str = "cpu") -> Any:
    """A checkpoint (directory or 'default') on ``device``."""
    from reranker.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(spec)
    loaded.model.to(torch_device(device))
    return loaded


def model_scores(
    args: argparse.Namespace, folder: Any, candidates: dict[str, list[tuple[str, float]]]
) -> dict[tuple[str, str], float]:
    """``--model``'s score of every candidate: read from ``--scores-from`` (a run an earlier evaluate
    of the same model wrote) when given, else computed (torch threads, device, precision of ``args``)."""
    from reranker.eval.reranking import scores_from_run

    pairs = [(q, p) for q, cands in candidates.items() for p, _ in cands]
    if getattr(args, "scores_from", None):
        return scores_from_run(args.scores_from, pairs)
    set_torch_threads(args.torch_threads)
    member = load_member(args.model, args)
    scores = member.score(folder.queries, folder.passages, pairs, progress=True)
    return dict(zip(pairs, scores.tolist(), strict=True))
