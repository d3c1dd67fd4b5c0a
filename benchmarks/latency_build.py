"""What the latency benchmark serves, built once and cached: models of every architecture at the real
shapes (initialised from all-MiniLM-L6-v2, or from ``--base DIR``: latency does not depend on
training), their ONNX graphs, passage stores of the requests' passages, and a server config.

Run by ``benchmarks.latency`` in a subprocess when something is missing (so the benchmark process
never loads torch); by hand:

    .venv/bin/python -m benchmarks.latency_build --work runs/bench-latency --queries 43
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from benchmarks._common import DL19, ROOT

MODEL_OPTIONS = '{"colbert_query_augmentation": false}'
"""As the shipped default student: ColBERT queries are not padded with [MASK] to the query length."""


def passage_ids(data: Path, queries: int, depth: int = 100) -> tuple[list[str], list[str]]:
    """(query ids, passage ids): the first ``queries`` queries of ``data``'s BM25 run (sorted ids) and
    the union of their top-``depth`` candidates, in first-seen order."""
    from reranker.data import DataFolder

    run = DataFolder.open(data).run("bm25")
    qids = sorted(run)[:queries]
    seen: dict[str, None] = {}
    for q in qids:
        for pid, _ in run[q][:depth]:
            seen.setdefault(pid, None)
    return qids, list(seen)


def models(
    archs: list[str],
    work: Path,
    store_key: str,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    text_archs: tuple[str, ...] = ("colbert",),
    student_precisions: tuple[str, ...] = ("fp32",),
    families: tuple[str, ...] = (),
    store_codec: str = "default",
    colbert_dims: tuple[int, ...] = (),
) -> list[dict]:
    """The served models: the cross-encoder teacher per precision (no store), each split model from its
    store per ``student_precisions`` (a store of its own per precision, whose passage encoder may
    differ;
    ``store_codec``: the architecture's default codec, as ``reranker serve`` builds it, or
    ``float16``), and those of ``text_archs`` also without a store (passages sent as text, fp32).
    ``colbert_dims``: also ColBERT with a projection to each of these dimensions (``colbert-d128``: the
    paper's 128-d token vectors), from its own store."""
    from reranker.arch import spec

    out = []
    for arch in archs:
        if not spec(arch).split:
            for p in precisions:
                out.append(
                    {
                        "name": "teacher" + ("" if p == "fp32" else f"-{p}"),
                        "arch": arch,
                        "artifact": str(work / f"onnx-{arch}-{p}"),
                        "precision": p,
                    }
                )
            continue
        for p in student_precisions:
            tag = "" if p == "fp32" else f"-{p}"
            out.append(
                {
                    "name": arch.replace("_", "-") + tag,
                    "arch": arch,
                    "artifact": str(work / f"onnx-{arch}-{p}"),
                    "precision": p,
                    "store": str(work / f"store-{arch}{tag}-{codec_tag(arch, store_codec)}-{store_key}"),
                    "store_codec": store_codec,
                }
            )
        if arch in text_archs:
            out.append({"name": f"{arch}-text", "arch": arch, "artifact": str(work / f"onnx-{arch}-fp32")})
        for dim in colbert_dims if spec(arch).maxsim else ():  # ColBERT: a projection to dim
            variant = f"{arch}-d{dim}"
            out.append(
                {
                    "name": variant,
                    "arch": arch,
                    "artifact": str(work / f"onnx-{variant}-fp32"),
                    "precision": "fp32",
                    "checkpoint": str(work / f"ckpt-{variant}"),
                    "options": {"colbert_dim": dim},
                    "store": str(work / f"store-{variant}-{codec_tag(arch, store_codec)}-{store_key}"),
                    "store_codec": store_codec,
                }
            )
    if families:
        from benchmarks.latency_families import served as family_models

        out += family_models(list(families), work)
    return out


def dims(text: str) -> tuple[int, ...]:
    """``"128,64"`` -> (128, 64): the ``--colbert-dims`` option (empty: none)."""
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"--colbert-dims: comma-separated positive integers, got {text!r}") from None
    if any(d <= 0 for d in out):
        raise SystemExit(f"--colbert-dims: dimensions must be positive, got {text!r}")
    return out


def codec_tag(arch: str, store_codec: str) -> str:
    """``residual1``, ``float16``, ...: the codec a store of ``arch`` is built with (part of its name)."""
    from reranker.arch import spec

    name, bits = spec(arch).store_codec if store_codec == "default" else (store_codec, 0)
    return f"{name}{bits or ''}"


def store_key(pids: list[str]) -> str:
    """A short name for a set of passages (stores are cached per set)."""
    return f"{len(pids)}p-" + hashlib.sha256("\n".join(pids).encode()).hexdigest()[:8]


def write_config(work: Path, served: list[dict], provider: str, max_candidates: int, batch_size: int = 16) -> Path:
    """A ``reranker serve --config`` file for ``served``: closed-loop benchmarking, so no queue-time
    bound (sheds, if any, are counted by the benchmark, not avoided)."""
    lines = [
        "# written by benchmarks.latency_build",
        f'default_model = "{served[0]["name"]}"',
        "",
        "[server]",
        "grace_seconds = 5",
        "max_queue_ms = 0",
        "cache_mb = 0  # requests repeat: measure the models, not the score cache",
        "",
        "[batching]",
        f"max_batch_size = {batch_size}",
        f"max_batch_cost = {256 * batch_size}",
        "",
        "[runtime]",
        f'provider = "{provider}"',
        "",
    ]
    for m in served:
        lines += ["[[models]]", f'name = "{m["name"]}"', f'artifact = "{m["artifact"]}"']
        if m.get("store"):
            lines.append(f'store = "{m["store"]}"')
        lines += [f"max_candidates = {max_candidates}", ""]
    path = work / f"server-{provider}.toml"
    path.write_text("\n".join(lines))
    return path


def missing(served: list[dict]) -> list[str]:
    """Paths of ``served`` not built yet."""
    paths = {m["artifact"] for m in served} | {m["store"] for m in served if m.get("store")}
    return sorted(p for p in paths if not (Path(p) / "manifest.json").is_file())


def build(work: Path, served: list[dict], base: str, pids: list[str], data: Path, lengths: dict[str, int]) -> None:
    """Checkpoints, exports and stores of ``served`` that are missing (each step cached)."""
    import torch

    from benchmarks._common import ensure_store
    from reranker.artifact import Artifact
    from reranker.data import DataFolder
    from reranker.models.checkpoint import init_from_base, save_checkpoint
    from reranker.store.compress import CodecConfig, default_codec
    from reranker_export.onnx_export import export_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    texts: dict[str, str] | None = None
    for m in served:
        art = Path(m["artifact"])
        ckpt = Path(m.get("checkpoint") or work / f"ckpt-{m['arch']}")
        if m.get("family"):  # an imported cross-encoder of another encoder family, at its base shape
            from benchmarks.latency_families import build_family

            if texts is None:
                passages = DataFolder.open(data).passages
                texts = {p: passages[p] for p in pids}
            build_family(m["family"], work, list(texts.values()))
            continue
        if not (art / "manifest.json").is_file():
            if not (ckpt / "manifest.json").is_file():
                torch.manual_seed(0)
                print(f"benchmarks.latency: initialising a {m['arch']} model from {base}", flush=True)
                save_checkpoint(
                    ckpt,
                    init_from_base(m["arch"], base, **lengths, **m.get("options", {})),
                    {"steps": 0, "note": "untrained: latency does not depend on the weights"},
                )
            precision = m.get("precision") or art.name.split("-", 2)[2]  # onnx-{arch}-{precision}
            print(f"benchmarks.latency: exporting {art.name}", flush=True)
            export_model(ckpt, art, precision=precision)
        if m.get("store") and not (Path(m["store"]) / "manifest.json").is_file():
            if texts is None:
                passages = DataFolder.open(data).passages
                texts = {p: passages[p] for p in pids}
            print(f"benchmarks.latency: storing {len(texts)} passages for {m['name']}", flush=True)
            artifact = Artifact.open(art)
            codec = default_codec(artifact.spec) if m["store_codec"] == "default" else CodecConfig(m["store_codec"])
            ensure_store(artifact, texts, Path(m["store"]), progress=True, codec=codec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-latency")
    ap.add_argument("--data", type=Path, default=DL19)
    ap.add_argument("--queries", type=int, default=43, help="queries whose BM25 top-100 the stores hold")
    ap.add_argument("--archs", default="bert_cat,colbert,bert_dot,tk")
    ap.add_argument("--base", default="minilm", help="'minilm' (the real shapes) or a Hugging Face BERT directory")
    ap.add_argument("--lengths", default=MODEL_OPTIONS, help="JSON model options (ModelConfig fields)")
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--precisions", default="fp32,int8", help="of the cross-encoder teacher")
    ap.add_argument("--student-precisions", default="fp32", help="of the students served from their stores")
    ap.add_argument("--families", default="", help="imported cross-encoder families at base shape (latency_families)")
    ap.add_argument("--store-codec", default="default", help="'default' (the architecture's, as served) or float16")
    ap.add_argument("--colbert-dims", default="", help="also ColBERT projected to these dimensions, e.g. 128")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    _, pids = passage_ids(args.data, args.queries)
    served = models(
        args.archs.split(","),
        args.work,
        store_key(pids),
        tuple(args.precisions.split(",")),
        student_precisions=tuple(args.student_precisions.split(",")),
        families=tuple(filter(None, args.families.split(","))),
        store_codec=args.store_codec,
        colbert_dims=dims(args.colbert_dims),
    )
    build(args.work, served, args.base, pids, args.data, json.loads(args.lengths))
    print(write_config(args.work, served, args.provider, 1000))


if __name__ == "__main__":
    main()
