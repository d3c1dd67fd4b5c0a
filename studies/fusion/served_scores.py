"""The served default's scores of first-stage lists, as TREC runs for ``reranker evaluate --scores-from``
and ``reranker pick-fusion --scores-from``.

Assembles the default's ONNX artifact from the package's kit (torch-free, as ``reranker serve`` does),
builds one passage store of every listed candidate (resumable), then sends each query's candidates
through the engine's request path (:class:`reranker.engine.LocalEngine`, no fusion) and writes the
model's score of each candidate: what a server answering with ``model_score`` would give.

    .venv/bin/python -m studies.fusion.served_scores --out runs/fusion/served \\
        --list dl19-bm25=data/msmarco-passage/trec-dl-2019:bm25 --list dl21-bm25=data/msmarco-passage/trec-dl-2021:bm25
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from reranker.artifact import Artifact
from reranker.config import DEFAULT_MODEL_DIR
from reranker.data import DataFolder, read_run, write_run
from reranker.engine import LocalEngine, RuntimeConfig, passage_encoder
from reranker.kit import assemble
from reranker.store.build import build_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifact, the store and NAME.run files")
    parser.add_argument(
        "--list",
        action="append",
        required=True,
        metavar="NAME=FOLDER:RUN",
        help="a first-stage list: RUN is a run name of FOLDER or a run file",
    )
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    artifact_dir = args.out / "artifact"
    if not (artifact_dir / "manifest.json").is_file():
        assemble(DEFAULT_MODEL_DIR, artifact_dir)
    artifact = Artifact.open(artifact_dir)
    lists = {}
    passages: dict[str, str] = {}
    for spec in args.list:
        name, _, rest = spec.partition("=")
        folder_path, _, run = rest.rpartition(":")
        folder = DataFolder.open(folder_path)
        cands = read_run(run) if Path(run).is_file() else folder.run(folder.resolve_run(run))
        cands = {q: c[: args.depth] for q, c in cands.items() if q in folder.queries}
        missing = sum(p not in folder.passages for c in cands.values() for p, _ in c)
        print(f"{name}: {len(cands)} queries, {sum(map(len, cands.values()))} candidates, {missing} without text")
        lists[name] = (folder, cands)
        passages.update({p: folder.passages[p] for c in cands.values() for p, _ in c if p in folder.passages})
    runtime = RuntimeConfig(provider="cpu", intra_op_threads=args.threads)
    store_dir = args.out / "store"
    if not (store_dir / "manifest.json").is_file():
        build_store(artifact, dict(sorted(passages.items())), store_dir, encode=passage_encoder(artifact, runtime))
    engine = LocalEngine.of(str(artifact_dir), str(store_dir), runtime=runtime)
    try:
        for name, (folder, cands) in lists.items():
            started, run = time.monotonic(), {}
            for qid, cs in cands.items():
                ids = [p for p, _ in cs if p in passages]
                out = engine.rerank(folder.queries[qid], ids)
                run[qid] = sorted(((r.id, r.model_score) for r in out.results), key=lambda x: -x[1])
            write_run(args.out / f"{name}.run", run, tag="served-default")
            print(f"{name}: scored {len(run)} queries in {time.monotonic() - started:.1f} s -> {args.out / name}.run")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
