"""Artifact commands: ONNX export (PyTorch -> ONNX) and passage-store builds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from reranker.artifact import PRECISIONS
from reranker.cli._common import data_arg
from reranker.cli.dataclass_args import add_dataclass_args, dataclass_kwargs
from reranker.errors import ConfigError
from reranker.machine import export_precision

if TYPE_CHECKING:
    from reranker.artifact import Artifact
    from reranker.engine.loader import PassageEncoder
    from reranker.store.compress import CodecConfig


def cmd_store_verify(args: argparse.Namespace) -> int:
    from reranker.store.verify import verify_store

    report = verify_store(args.store)
    print(
        f"store {report.directory}: ok ({report.passages:,} passages, {report.tokens:,} tokens, codec {report.codec}, "
        f"{report.files} files matched their sha256, {report.bytes / 1e6:.1f} MB of passage state read)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reranker_export.onnx_export import export_model
    from reranker_export.quantize import calibration_pairs

    if args.precision == "auto":  # by the CPU's flags (reranker.machine.CROSS_ENCODER_SERVING)
        choice = export_precision(Path(args.model), args.calibration is not None, int8_exclude=args.int8_exclude)
        args.precision, args.int8_exclude = choice.precision, choice.int8_exclude
        args.calibration = args.calibration if args.precision == "int8-static" else None  # else unused
        print(f"--precision auto: {choice.why}")
    calibration: list[tuple[str, str]] = []
    if args.precision == "int8-static":
        if args.calibration is None:
            raise ConfigError("--precision int8-static needs --calibration DATA_FOLDER (its run's pairs; never the test set)")
        calibration = calibration_pairs(args.calibration, args.calibration_pairs)
    elif args.calibration is not None:
        raise ConfigError(f"--calibration is for --precision int8-static, not {args.precision}")
    manifest = export_model(
        args.model, args.out, precision=args.precision, opset=args.opset, int8_exclude=args.int8_exclude, calibration=calibration
    )
    parity, graphs = manifest["parity"], ", ".join(manifest["graphs"])
    print(
        f"exported {manifest['arch']} ({args.precision}) to {args.out}: graphs {graphs}; max |ORT - torch| score "
        f"{parity['scores_max_abs_diff']:.2e} (max |score| {parity['max_abs_score']:.3g})"
    )
    return 0


def cmd_ship_onnx(args: argparse.Namespace) -> int:
    from reranker_export.kit import ship_onnx

    kit = ship_onnx(args.model, opset=args.opset)
    parity = kit["manifest"]["parity"]
    print(
        f"wrote {args.model}/onnx: graphs {', '.join(kit['graphs'])}, {len(kit['tensors'])} weight slices "
        f"({kit['weights_bytes'] / 1e6:.1f} MB assembled at first start, torch-free), word embeddings "
        f"{kit['word_embeddings']}; max |assembled ORT - torch| score {parity['scores_max_abs_diff']:.2e} "
        f"(max |score| {parity['max_abs_score']:.3g})"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from reranker.models.hf_import import import_model

    done = import_model(args.source, args.out, query_max_len=args.query_max_len, passage_max_len=args.passage_max_len)
    print(
        f"imported {args.source} ({done['format']}) as {done['arch']} ({done['parameters']:,} parameters) into "
        f"{args.out}; export it with 'reranker export --model {args.out} --out ARTIFACT'"
    )
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from reranker.artifact import Artifact
    from reranker.data import Collection
    from reranker.engine import RuntimeConfig, passage_encoder
    from reranker.store.build import build_store
    from reranker.store.compress import CodecConfig, default_codec

    artifact = Artifact.open(args.artifact)
    collection = Collection.open(args.data)
    passages = collection.passages
    if args.run is not None:  # only the passages a first stage puts in its top-depth (e.g. for benchmarks)
        wanted = {pid for cands in collection.candidates(args.run, args.depth).values() for pid, _ in cands}
        passages = {pid: passages[pid] for pid in sorted(wanted) if pid in passages}
    codec = _codec(args) or (CodecConfig(args.dtype) if args.dtype else default_codec(artifact.spec))
    if args.shards:
        from reranker.store.distributed import build_store_ray

        m = build_store_ray(
            args.artifact,
            passages,
            args.out,
            shards=args.shards,
            encoder=cpu_encoder,
            codec=codec,
            actors=args.actors,
            ort_threads=args.ort_threads or 1,
            chunk=args.chunk,
            address=args.ray_address,
        )
        _report(f"indexed on Ray ({m['build']['shards_built_now']} of {args.shards} shards built now)", m, args.out)
        return 0
    encode = passage_encoder(artifact, RuntimeConfig(provider=args.provider, intra_op_threads=args.ort_threads))
    m = build_store(artifact, passages, args.out, encode=encode, codec=codec, chunk=args.chunk)
    _report("indexed", m, args.out)
    return 0


def cpu_encoder(artifact: Artifact, threads: int) -> PassageEncoder:
    """The passage encoder of ``artifact`` on the CPU with ``threads`` ONNX Runtime threads (Ray actors)."""
    from reranker.engine import RuntimeConfig, passage_encoder

    return passage_encoder(artifact, RuntimeConfig(provider="cpu", intra_op_threads=threads))


def _codec(args: argparse.Namespace) -> CodecConfig | None:
    from reranker.store.compress import CodecConfig

    kwargs = dataclass_kwargs(CodecConfig, args, prefix="codec-")
    return CodecConfig(**{**kwargs, "name": args.codec}) if args.codec else None


def _report(verb: str, m: dict, out: Path) -> None:
    print(
        f"{verb} {m['passages']} passages ({m['tokens']} vectors of {m['dim']} dims, codec {m['codec']['name']}) "
        f"into {out}: {m['bytes_per_passage']:.0f} bytes per passage, {m['bytes_per_token']} per vector"
    )


def cmd_recode(args: argparse.Namespace) -> int:
    from reranker.artifact import Artifact
    from reranker.store.build import recode_store
    from reranker.store.compress import CodecConfig

    m = recode_store(Artifact.open(args.artifact), args.store, args.out, codec=_codec(args) or CodecConfig("residual"))
    _report("recoded", m, args.out)
    return 0


def _codec_args(p: argparse.ArgumentParser, default: str | None) -> None:
    from reranker.store.compress import CodecConfig

    p.add_argument(
        "--codec",
        choices=("float16", "float32", "residual", "pq"),
        default=default,
        help="how token vectors are stored: as they are, or nearest k-means centroid + residual bits (ColBERTv2) "
        "or + product-quantised residual (pq: --codec-subspaces bytes); default: --dtype if given, else the "
        "architecture's (arch.py store_codec: ColBERT residual 1 bit, TK 2 bits, PreTT 4 bits, BERT-dot float16)"
        if default is None
        else "the codec of the new store",
    )
    add_dataclass_args(p, CodecConfig, prefix="codec-", skip=("name",))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the export, import, ship-onnx, index commands."""
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX graphs (verified against PyTorch)",
        description="Writes the graphs the architecture needs, config, tokenizer and manifest.json "
        "(sha256 of every file, parity figures). fp16 is for GPUs, int8 for CPUs.",
    )
    p.add_argument("--model", required=True, help="a reranker model directory")
    p.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    p.add_argument(
        "--precision",
        choices=(*PRECISIONS, "auto"),
        default="fp32",
        help="fp16: GPUs; int8: dynamic; int8-static: calibrated, openvino with VNNI; int8-query: the query encoder; auto",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="DATA_FOLDER",
        help="int8-static: a data folder whose run gives the calibration pairs (its top 3 per query), "
        "e.g. data/msmarco-passage/msmarco-dev-small-600; never the test set",
    )
    p.add_argument("--calibration-pairs", type=int, default=300, help="int8-static: calibration pairs")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument(
        "--int8-exclude",
        default=None,
        metavar="REGEX",
        help="int8, int8-static: keep the MatMul nodes whose name matches in floating point (e.g. "
        "'layer\\.\\d+/output/dense' for the feed-forward outputs)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        help="convert a transformers / sentence-transformers model into a checkpoint",
        description="Cross-encoders (*ForSequenceClassification with one label, or a sentence-transformers "
        "CrossEncoder) of BERT, RoBERTa, XLM-RoBERTa, DeBERTa-v2/v3, ModernBERT, ELECTRA or DistilBERT "
        "become hf_cat (transformers' own model), sentence-transformers bi-encoders (Transformer, Pooling "
        "cls/mean, Normalize) bert_dot, Stanford ColBERT and PyLate checkpoints colbert; anything else is "
        "refused with the reason (see docs/import.md).",
    )
    p.add_argument("--from", dest="source", required=True, type=Path, help="the saved model directory")
    p.add_argument("--out", required=True, type=Path, help="reranker checkpoint directory to write")
    p.add_argument(
        "--query-max-len",
        type=int,
        default=None,
        help="query tokens incl. [CLS]/[SEP] (cross-encoders: without them, default 64; ColBERT: the "
        "checkpoint's; else 32); longer queries are refused, never cut",
    )
    p.add_argument(
        "--passage-max-len",
        type=int,
        default=None,
        help="passage tokens incl. [CLS]/[SEP] (cross-encoders: the whole pair's, default the CrossEncoder's "
        "max_length; ColBERT: the checkpoint's; else 202)",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "ship-onnx",
        help="add torch-free serving graphs to a checkpoint (MODEL/onnx)",
        description="Exports fp32 graphs whose weights are external data rebuilt at first start "
        "from MODEL/model.safetensors (and int8 word embeddings when the checkpoint reads "
        "them from its base package), so that a serve-only install (no torch) can serve "
        "the checkpoint. Verified: assembled without torch, scored against PyTorch.",
    )
    p.add_argument("--model", required=True, help="a reranker model directory (e.g. reranker/default_model)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.set_defaults(func=cmd_ship_onnx)

    p = sub.add_parser(
        "index",
        help="precompute every passage's state into a memory-mapped passage store",
        description="Encodes each passage of the data folders once with the artifact's passage "
        "encoder; an interrupted build continues when rerun.",
    )
    p.add_argument("--artifact", required=True, type=Path, help="ONNX artifact directory (not bert_cat)")
    data_arg(p)
    p.add_argument("--out", required=True, type=Path, help="store directory to write")
    p.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default=None,
        help="store the vectors as they are, in this dtype (default: the architecture's codec, see --codec)",
    )
    p.add_argument("--run", default=None, help="index only the passages of this run's candidates (default: all)")
    p.add_argument("--depth", type=int, default=None, help="with --run: only each query's top N")
    p.add_argument("--chunk", type=int, default=512, help="passages committed per chunk")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--ort-threads",
        type=int,
        default=0,
        help="ONNX Runtime intra-op threads (0 = all cores); PyTorch commands take --torch-threads",
    )
    _codec_args(p, None)
    ray = p.add_argument_group("Ray build (the cluster extra)")
    ray.add_argument(
        "--shards",
        type=int,
        default=0,
        help="build on Ray in this many shards, read as one store by the server (0 = one process)",
    )
    ray.add_argument("--actors", type=int, default=1, help="encoder actors (each holds ONNX Runtime sessions)")
    ray.add_argument("--ray-address", default=None, help="a running Ray cluster (default: start a local one)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("store", help="passage-store tools (verify)")
    store = p.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")
    v = store.add_parser(
        "verify",
        help="check a passage store in full: sha256 of every file, centroid ids, finite vectors",
        description="Reads every byte of the store (opening it for serving checks only what is cheap). "
        "Exit status 2 and a message naming the damaged files or passages when it fails.",
    )
    v.add_argument("store", type=Path, help="the store directory")
    v.set_defaults(func=cmd_store_verify)

    p = sub.add_parser(
        "recode",
        help="write a passage store again with another codec (no text is encoded)",
        description="Reads every state of a built store and writes a new store with the codec, "
        "fitting it (residual: k-means) on a sample of the states first.",
    )
    p.add_argument("--artifact", required=True, type=Path, help="the ONNX artifact the store was built for")
    p.add_argument("--store", required=True, type=Path, help="the store to read")
    p.add_argument("--out", required=True, type=Path, help="store directory to write")
    _codec_args(p, "residual")
    p.set_defaults(func=cmd_recode)
