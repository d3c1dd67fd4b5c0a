"""The peers that need a venv of their own (studies/peers/extra-setup.sh), run INSIDE that venv as a
subprocess of studies/peers/__main__.py, so that they are timed within the same rounds as the other systems.

    .venv-peers/bin/python studies/peers/extra.py --hf-dir HF --pairs PAIRS.json --batches 16,32 \\
        --max-length 192 --work DIR --systems "infinity, torch;infinity, optimum ONNX"

Only the standard library and the venv's own packages are imported (never reranker/ or benchmarks/).
PAIRS.json: {"speed": [{"query": str, "passages": [str, ...]}, ...], "quality": [same]}.
HF: a Hugging Face BertForSequenceClassification directory (studies/peers/__main__.py writes it from our
teacher with reranker.models.hf_export.to_hf_cross_encoder); it is copied, never written to.

Protocol, one JSON object per line (stdout carries nothing else; library output goes to stderr):
  out  {"ready": true, "systems": [name, ...], "not_run": {name: why}, "versions": {package: version}}
  in   {"op": "time", "system": name, "requests": n | null}
  out  {"system": name, "rates": {"16": pairs_per_s, ...}}   (each batch size over the first n speed
                                                            requests, one query per call; null = all)
  in   {"op": "score", "system": name, "batch": b}
  out  {"system": name, "scores": [[raw logit, ...] per quality request]}
  in   {"op": "quit"} (or end of input)
A failing command answers {"system": name, "error": "Type: message"}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

Score = Callable[[str, list[str]], list[float]]
"""(query, passage texts) -> one raw score (logit) per passage, in order."""
ByBatch = Callable[[int], Score]
STOP: list[Callable[[], Any]] = []
"""What stops the engines' threads at exit."""
PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "sentence-transformers", "infinity-emb")


class Context:
    """Where a loader finds the model and keeps what it exports (cached across runs)."""

    def __init__(self, hf_dir: Path, work: Path, max_length: int) -> None:
        self.work, self.max_length = work, max_length
        self.hf = work / "hf"
        # Exports are cached in ``work`` for one model: another model's weights start it afresh.
        digest = hashlib.sha256(
            b"".join((hf_dir / f).read_bytes() for f in ("config.json", "model.safetensors") if (hf_dir / f).is_file())
        ).hexdigest()
        stamp = work / "source.sha256"
        if not stamp.is_file() or stamp.read_text().strip() != digest:
            for cached in ("hf", "hf-home", "onnx-fp32", "onnx-int8", "st-onnx"):
                shutil.rmtree(work / cached, ignore_errors=True)
            shutil.copytree(hf_dir, self.hf)
            stamp.write_text(digest + "\n")
        # Truncate as the other peers do (CrossEncoder(max_length=...)): the tokenizer's own limit.
        cfg_path = self.hf / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["model_max_length"] = max_length
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")

    def onnx_dir(self, int8: bool) -> Path:
        """The model exported by optimum (model.onnx), plus its avx512_vnni dynamic int8 quantisation
        (model_quantized.onnx, the name infinity prefers on a CPU) when ``int8``."""
        from optimum.onnxruntime import ORTModelForSequenceClassification

        fp32 = self.work / "onnx-fp32"
        if not (fp32 / "model.onnx").is_file():
            ORTModelForSequenceClassification.from_pretrained(str(self.hf), export=True).save_pretrained(str(fp32))
            for f in self.hf.glob("*.json"):
                shutil.copy(f, fp32 / f.name)
            shutil.copy(self.hf / "tokenizer.json", fp32 / "tokenizer.json")
        if not int8:
            return fp32
        q = self.work / "onnx-int8"
        if not (q / "model_quantized.onnx").is_file():
            from optimum.onnxruntime import ORTQuantizer
            from optimum.onnxruntime.configuration import AutoQuantizationConfig

            q.mkdir(parents=True, exist_ok=True)
            for f in fp32.iterdir():
                if f.suffix == ".json":
                    shutil.copy(f, q / f.name)
            quantizer = ORTQuantizer.from_pretrained(str(fp32), file_name="model.onnx")
            quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False), save_dir=str(q))
        return q


def st_onnx(ctx: Context, variant: str) -> ByBatch:
    """sentence-transformers' CrossEncoder, backend="onnx": fp32, or its int8 export (avx512_vnni)."""
    import torch
    from sentence_transformers import CrossEncoder

    base = ctx.work / "st-onnx"
    if not (base / "onnx/model.onnx").is_file():
        CrossEncoder(str(ctx.hf), max_length=ctx.max_length, device="cpu", backend="onnx").save_pretrained(str(base))
    kwargs: dict[str, Any] = {}
    if variant == "int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        name = "onnx/model_qint8_avx512_vnni.onnx"
        if not (base / name).is_file():
            model = CrossEncoder(str(base), max_length=ctx.max_length, device="cpu", backend="onnx")
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(base))
        kwargs = {"model_kwargs": {"file_name": name}}
    model = CrossEncoder(str(base), max_length=ctx.max_length, device="cpu", backend="onnx", **kwargs)

    def at(batch: int) -> Score:
        def score(query: str, texts: list[str]) -> list[float]:
            out = model.predict(
                [(query, t) for t in texts],
                batch_size=batch,
                show_progress_bar=False,
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=True,
            )
            return [float(x) for x in out.reshape(-1)]

        return score

    return at


def infinity(ctx: Context, engine: str) -> ByBatch:
    """infinity-emb's AsyncEmbeddingEngine (its batching and tokenisation threads included), one per batch
    size: torch (ST CrossEncoder under it) or optimum (ONNX Runtime, fp32 or int8 file)."""
    from infinity_emb import AsyncEmbeddingEngine, EngineArgs

    path = ctx.hf if engine == "torch" else ctx.onnx_dir(int8=engine == "optimum-int8")
    loop = asyncio.new_event_loop()
    engines: dict[int, Any] = {}

    def at(batch: int) -> Score:
        if batch not in engines:
            # From inside the folder: infinity 0.0.78 hands optimum the ONNX file's path as found by globbing
            # the folder, which optimum reads relative to the folder (a path given as "." works).
            with contextlib.chdir(path):
                args = EngineArgs(
                    model_name_or_path=".",
                    engine="torch" if engine == "torch" else "optimum",
                    device="cpu",
                    batch_size=batch,
                    model_warmup=False,
                    bettertransformer=False,
                )
                engines[batch] = AsyncEmbeddingEngine.from_args(args)
                loop.run_until_complete(engines[batch].astart())
                STOP.append(lambda e=engines[batch]: loop.run_until_complete(e.astop()))

        def score(query: str, texts: list[str]) -> list[float]:
            ranked, _ = loop.run_until_complete(engines[batch].rerank(query=query, docs=texts, raw_scores=True))
            out = [0.0] * len(texts)
            for r in ranked:
                out[r.index] = float(r.relevance_score)
            return out

        return score

    return at


LOADERS: dict[str, Callable[[Context], ByBatch]] = {
    "ST, ONNX fp32": lambda c: st_onnx(c, "fp32"),
    "ST, ONNX int8 (avx512_vnni)": lambda c: st_onnx(c, "int8"),
    "infinity, torch": lambda c: infinity(c, "torch"),
    "infinity, optimum ONNX": lambda c: infinity(c, "optimum"),
    "infinity, optimum ONNX int8": lambda c: infinity(c, "optimum-int8"),
}


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[p] = importlib.metadata.version(p)
    return out


def serve(systems: dict[str, ByBatch], pairs: dict, batches: list[int], reply: Callable[[dict], None]) -> None:
    """Answers the commands on stdin until quit or end of input."""
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            return
        name = cmd.get("system", "")
        try:
            if name not in systems:
                raise KeyError(f"unknown or not loaded system {name!r}; loaded: {sorted(systems)}")
            if cmd["op"] == "time":
                reqs = pairs["speed"][: cmd.get("requests")]
                rates = {}
                for b in batches:
                    score = systems[name](b)
                    started = time.perf_counter()
                    for r in reqs:
                        score(r["query"], r["passages"])
                    rates[str(b)] = sum(len(r["passages"]) for r in reqs) / (time.perf_counter() - started)
                reply({"system": name, "rates": rates})
            elif cmd["op"] == "score":
                score = systems[name](int(cmd["batch"]))
                reply({"system": name, "scores": [score(r["query"], r["passages"]) for r in pairs["quality"]]})
            else:
                raise ValueError(f"unknown op {cmd.get('op')!r}; allowed: time, score, quit")
        except Exception as exc:
            traceback.print_exc()
            reply({"system": name, "error": f"{type(exc).__name__}: {exc}"[:500]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", type=Path, required=True)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--batches", default="16,32")
    ap.add_argument("--max-length", type=int, required=True, help="tokens per (query, passage) pair")
    ap.add_argument("--work", type=Path, required=True, help="a folder of this venv's exports (cached)")
    ap.add_argument("--systems", default=";".join(LOADERS), help=f"';'-separated, of: {'; '.join(LOADERS)}")
    args = ap.parse_args()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr; the protocol has stdout to itself

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", str(args.work / "hf-home"))  # before any Hugging Face import
    ctx = Context(args.hf_dir.resolve(), args.work, args.max_length)
    pairs = json.loads(args.pairs.read_text())
    batches = [int(b) for b in args.batches.split(",")]
    systems: dict[str, ByBatch] = {}
    not_run: dict[str, str] = {}
    for name in filter(None, args.systems.split(";")):
        try:
            if name not in LOADERS:
                raise KeyError(f"unknown system {name!r}; known: {sorted(LOADERS)}")
            systems[name] = LOADERS[name](ctx)
            for b in batches:
                systems[name](b)(pairs["speed"][0]["query"], pairs["speed"][0]["passages"][:2])  # loads, warms
        except Exception as exc:
            traceback.print_exc()
            systems.pop(name, None)
            not_run[name] = f"{type(exc).__name__}: {exc}"[:500]
    reply({"ready": True, "systems": list(systems), "not_run": not_run, "versions": versions()})
    serve(systems, pairs, batches, reply)
    for stop in STOP:
        with contextlib.suppress(Exception):
            stop()
    proto.close()
    os._exit(0)  # a library thread left running must not keep the process (and peers.py) waiting


if __name__ == "__main__":
    main()
