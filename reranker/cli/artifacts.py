"""Artifact commands: ONNX export (PyTorch -> ONNX) and passage-store builds."""

from __future__ import annotations

import argparse
from pathlib import Path

from reranker.cli._common import data_arg


def cmd_export(args: argparse.Namespace) -> int:
    from reranker_export.onnx_export import export_model

    manifest = export_model(args.model, args.out, precision=args.precision, opset=args.opset,
                            int8_exclude=args.int8_exclude)
    parity = manifest["parity"]
    print(f"exported {manifest['arch']} ({args.precision}) to {args.out}: graphs {', '.join(manifest['graphs'])}; "
          f"max |ORT - torch| score {parity['scores_max_abs_diff']:.2e} (max |score| {parity['max_abs_score']:.3g})")
    return 0


def cmd_ship_onnx(args: argparse.Namespace) -> int:
    from reranker_export.kit import ship_onnx

    kit = ship_onnx(args.model, opset=args.opset)
    parity = kit["manifest"]["parity"]
    print(f"wrote {args.model}/onnx: graphs {', '.join(kit['graphs'])}, {len(kit['tensors'])} weight slices "
          f"({kit['weights_bytes'] / 1e6:.1f} MB assembled at first start, torch-free), word embeddings "
          f"{kit['word_embeddings']}; max |assembled ORT - torch| score {parity['scores_max_abs_diff']:.2e} "
          f"(max |score| {parity['max_abs_score']:.3g})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from reranker.models.hf_import import import_model

    done = import_model(args.source, args.out, query_max_len=args.query_max_len, passage_max_len=args.passage_max_len)
    print(f"imported {args.source} ({done['format']}) as {done['arch']} ({done['parameters']:,} parameters) into "
          f"{args.out}; export it with 'reranker export --model {args.out} --out ARTIFACT'")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from reranker.artifact import Artifact
    from reranker.data import Collection
    from reranker.engine import RuntimeConfig, passage_encoder
    from reranker.store.build import build_store

    artifact = Artifact.open(args.artifact)
    collection = Collection.open(args.data)
    passages = collection.passages
    if args.run is not None:  # only the passages a first stage puts in its top-depth (e.g. for benchmarks)
        wanted = {pid for cands in collection.candidates(args.run, args.depth).values() for pid, _ in cands}
        passages = {pid: passages[pid] for pid in sorted(wanted) if pid in passages}
    encode = passage_encoder(artifact, RuntimeConfig(provider=args.provider, intra_op_threads=args.ort_threads))
    m = build_store(artifact, passages, args.out, encode=encode, dtype=args.dtype, chunk=args.chunk)
    print(f"indexed {m['passages']} passages ({m['tokens']} vectors of {m['dim']} x {m['dtype']}) into {args.out}: "
          f"{m['bytes_per_passage']:.0f} bytes per passage, {m['bytes_per_token']} per vector")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the export, import, ship-onnx, index commands."""
    p = sub.add_parser("export", help="export a checkpoint to ONNX graphs (verified against PyTorch)",
                       description="Writes the graphs the architecture needs, config, tokenizer and manifest.json "
                                   "(sha256 of every file, parity figures). fp16 is for GPUs, int8 for CPUs.")
    p.add_argument("--model", required=True, help="a reranker model directory")
    p.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--int8-exclude", default=None, metavar="REGEX",
                   help="int8: keep the MatMul nodes whose name matches in fp32 (e.g. 'output/dense' for "
                        "the feed-forward outputs)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="convert a transformers / sentence-transformers model into a checkpoint",
                       description="Cross-encoders (BertForSequenceClassification, sentence-transformers CrossEncoder) "
                                   "become bert_cat, sentence-transformers bi-encoders (Transformer, Pooling cls/mean, "
                                   "Normalize) bert_dot, Stanford ColBERT and PyLate checkpoints colbert; anything else is "
                                   "refused with the reason "
                                   "(see reranker/models/hf_import.py).")
    p.add_argument("--from", dest="source", required=True, type=Path, help="the saved model directory")
    p.add_argument("--out", required=True, type=Path, help="reranker checkpoint directory to write")
    p.add_argument("--query-max-len", type=int, default=None,
                   help="query word pieces incl. [CLS]/[SEP] (default: the ColBERT checkpoint's, else 32)")
    p.add_argument("--passage-max-len", type=int, default=None,
                   help="passage word pieces incl. [CLS]/[SEP] (default: the ColBERT checkpoint's, else 202)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("ship-onnx", help="add torch-free serving graphs to a checkpoint (MODEL/onnx)",
                       description="Exports fp32 graphs whose weights are external data rebuilt at first start "
                                   "from MODEL/model.safetensors (and int8 word embeddings when the checkpoint reads "
                                   "them from its base package), so that a serve-only install (no torch) can serve "
                                   "the checkpoint. Verified: assembled without torch, scored against PyTorch.")
    p.add_argument("--model", required=True, help="a reranker model directory (e.g. reranker/default_model)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.set_defaults(func=cmd_ship_onnx)

    p = sub.add_parser("index", help="precompute every passage's state into a memory-mapped passage store",
                       description="Encodes each passage of the data folders once with the artifact's passage "
                                   "encoder; an interrupted build continues when rerun.")
    p.add_argument("--artifact", required=True, type=Path, help="ONNX artifact directory (not bert_cat)")
    data_arg(p)
    p.add_argument("--out", required=True, type=Path, help="store directory to write")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--run", default=None, help="index only the passages of this run's candidates (default: all)")
    p.add_argument("--depth", type=int, default=None, help="with --run: only each query's top N")
    p.add_argument("--chunk", type=int, default=512, help="passages committed per chunk")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--ort-threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads (0 = all cores); PyTorch commands take --torch-threads")
    p.set_defaults(func=cmd_index)
