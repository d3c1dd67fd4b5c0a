"""Product quantisation of the residual (IVF-PQ: Jégou et al., "Product quantization for nearest
neighbor search", TPAMI 2011) against the store's 1-bit residual, in quality only.

Every stored vector is replaced by its reconstruction (nearest k-means centroid plus, per sub-vector
of ``dim / subspaces`` dimensions, the nearest of 256 codewords fitted on the residuals; then
renormalised) in a float16 store, which ``python -m studies.store_codec`` evaluates like any other
store. The question, for a codec that is not built: do 16 bytes of PQ codes (one byte per
8-dimensional sub-vector of a 128-d ColBERT) plus the 2-byte centroid id stay within 0.005 nDCG@10
of the fp16 store, where 16 bytes of residual signs do not?

    .venv/bin/python -m studies.store_codec.pq --artifact runs/codec-d128/onnx \\
        --store runs/codec-d128/store-dl19-fp16 --out runs/codec-d128/store-dl19-pq16
    .venv/bin/python -m studies.store_codec --artifact runs/codec-d128/onnx \\
        --eval dl19=data/msmarco-passage/trec-dl-2019:runs/codec-d128/store-dl19-pq16 --latency-requests 0
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reranker.artifact import Artifact
from reranker.store import PassageStore
from reranker.store.build import build_store
from reranker.store.codec import nearest
from reranker.store.compress import kmeans, sample_positions

CODEWORDS = 256  # one byte per sub-vector


def fit(x: np.ndarray, *, centroids: int, subspaces: int, points: int, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(coarse centroids (K, dim), codebooks (subspaces, 256, dim / subspaces)) fitted on ``points``
    evenly spaced rows of ``x`` ((n, dim) float32); ``centroids`` 0: no coarse quantiser (plain PQ)."""
    dim = x.shape[1]
    if dim % subspaces:
        raise SystemExit(f"--subspaces must divide the store's {dim} dimensions, got {subspaces}")
    sample = x[sample_positions(len(x), min(points, len(x)))]
    coarse = kmeans(sample, centroids, iters=iters, seed=0) if centroids else np.zeros((1, dim), np.float32)
    residual = sample - coarse[nearest(sample, coarse)]
    width = dim // subspaces
    books = [
        kmeans(np.ascontiguousarray(residual[:, m * width : (m + 1) * width]), CODEWORDS, iters=iters, seed=m)
        for m in range(subspaces)
    ]
    return coarse, np.stack(books)


def reconstruct(x: np.ndarray, coarse: np.ndarray, books: np.ndarray) -> np.ndarray:
    """(n, dim) float32: each row of ``x`` as the codec would decode it (renormalised to unit length)."""
    base = coarse[nearest(x, coarse)]
    residual = x - base
    width = books.shape[2]
    out = base.copy()
    for m, book in enumerate(books):
        part = slice(m * width, (m + 1) * width)
        out[:, part] += book[nearest(np.ascontiguousarray(residual[:, part]), book)]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, type=Path)
    ap.add_argument("--store", required=True, type=Path, help="the fp16 store to quantise")
    ap.add_argument("--out", required=True, type=Path, help="the float16 store of reconstructions to write")
    ap.add_argument("--subspaces", type=int, default=16, help="sub-vectors (bytes of PQ codes per token)")
    ap.add_argument("--centroids", type=int, default=1024, help="coarse centroids (0: plain PQ, no centroid id)")
    ap.add_argument("--points", type=int, default=131072, help="vectors the k-means runs on")
    args = ap.parse_args()
    artifact = Artifact.open(args.artifact)
    src = PassageStore.open(args.store, artifact)
    pids = list(src.ids)
    states = [np.asarray(s, dtype=np.float32) for s in src.get_many(pids)]
    x = np.concatenate(states)
    began = time.perf_counter()
    coarse, books = fit(x, centroids=args.centroids, subspaces=args.subspaces, points=args.points)
    rebuilt = reconstruct(x, coarse, books)
    ends = np.cumsum([len(s) for s in states])
    by_pid = dict(zip(pids, np.split(rebuilt, ends[:-1]), strict=True))
    cos = float(np.mean(np.einsum("nd,nd->n", x, rebuilt) / np.maximum(np.linalg.norm(x, axis=1), 1e-12)))

    def read(batch: Sequence[str]) -> list[tuple[np.ndarray, bool]]:
        return [(by_pid[p], src.is_truncated(p)) for p in batch]

    build_store(artifact, {p: p for p in pids}, args.out, encode=read, dtype="float16", progress=False)
    record = {
        "store": str(args.store),
        "subspaces": args.subspaces,
        "centroids": args.centroids,
        "bytes_per_token": args.subspaces + (2 if args.centroids else 0),
        "vectors": len(x),
        "mean_cosine_to_original": round(cos, 4),
        "seconds": round(time.perf_counter() - began, 1),
    }
    (args.out / "pq.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
