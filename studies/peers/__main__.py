"""What a team would pick instead to serve the teacher, side by side with ours, on the same weights and
the same real pairs: sentence-transformers' CrossEncoder on each backend it offers here, infinity, and
our teacher in process and over gRPC (fp32 and int8).

    studies/peers/setup.sh          # the `bench` extra in .venv-bench, torch kept at 2.13.0
    studies/peers/extra-setup.sh    # optional: infinity and ST's ONNX backend, in venvs of their own
    .venv-bench/bin/python -m studies.peers --teacher runs/bench-latency/minilm-*/ckpt-bert_cat \\
        --json studies/peers/results/2026-11-30-cpu.json

Speed: the BM25 top-100 of --queries DL19 queries (500 pairs by default), one query per call, each
system in turn within each of --rounds rounds (so all saw the same machine load), best of the
CrossEncoder batch sizes 16/32/64, median over rounds. The systems of .venv-peers / .venv-peers-st
(studies/peers/venvs.py) take their turn in the same rounds, timed inside their subprocess.
Quality (--quality-queries > 0): nDCG@10 on DL19 BM25 top-100 and the largest score difference from
the CrossEncoder in torch fp32. OpenVINO int8 is calibrated on MS MARCO dev pairs (never on DL19).
A peer that cannot install, load or run is reported with its reason, not dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import DL19, ROOT, start_server
from benchmarks.latency_report import machine
from reranker.data import DataFolder
from reranker.machine import FFN_OUTPUTS
from studies.peers.venvs import close_runners, start_runners

Scorer = Callable[[str, list[tuple[str, str]]], np.ndarray]
"""(query, [(id, text)] of one query) -> scores in candidate order."""


def cross_encoder(hf_dir: Path, backend: str, max_length: int, **kwargs: Any):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(hf_dir), max_length=max_length, device="cpu", backend=backend, **kwargs)


def st_scorer(model: Any, bf16: bool = False) -> Callable[[int], Scorer]:
    """A CrossEncoder.predict per query at a batch size (raw logits; bf16: torch autocast)."""
    import torch

    def at(batch: int) -> Scorer:
        def score(query: str, cands: list[tuple[str, str]]) -> np.ndarray:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx, torch.inference_mode():
                out = model.predict(
                    [(query, t) for _, t in cands],
                    batch_size=batch,
                    show_progress_bar=False,
                    activation_fn=torch.nn.Identity(),
                    convert_to_numpy=True,
                )
            return np.asarray(out, dtype=np.float32).reshape(-1)

        return score

    return at


def ov_int8_static(model: Any, calibration: list[tuple[str, str]]) -> Any:
    """nncf post-training int8 of the CrossEncoder's OpenVINO model, calibrated on ``calibration`` pairs."""
    import nncf

    tok, auto = model.tokenizer, model[0].auto_model
    items = [dict(tok([q], [p], truncation=True, max_length=model.max_length, return_tensors="np")) for q, p in calibration]
    auto.model = nncf.quantize(auto.model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items))
    auto.request = None
    auto.compile()
    return model


OURS = {
    "fp32": ("fp32", "onnxruntime"),
    "int8": ("int8", "onnxruntime"),
    "int8, FFN outputs fp32": ("int8-ffn-out-float", "onnxruntime"),
    "bf16, OpenVINO": ("fp32", "openvino"),
    "int8-static, OpenVINO": ("int8-static", "openvino"),
}
"""Our served teacher: system name -> (artifact, runtime backend). OpenVINO runs the fp32 artifact at its
default precision: bf16 where the CPU has it, f32 on AVX2-only CPUs (where "bf16, OpenVINO" is f32 arithmetic)."""

ARTIFACTS = {
    "fp32": ("fp32", None),
    "int8": ("int8", None),
    "int8-ffn-out-float": ("int8", FFN_OUTPUTS),
    "int8-static": ("int8-static", None),
}
"""Artifact name -> (``reranker export --precision``, ``--int8-exclude``): "int8-ffn-out-float" keeps the
feed-forward output MatMuls (BERT's activation outliers) in fp32 (studies/teacher_quantization)."""


def our_scorers(artifacts: dict[str, Path], work: Path) -> tuple[dict[str, Scorer], Callable[[], None]]:
    """Our teacher per precision and backend, in process (LocalEngine) and over gRPC (one client, own server)."""
    from reranker.client import RerankerClient
    from reranker.engine import LocalEngine, RuntimeConfig

    out: dict[str, Scorer] = {}
    engines = {}
    served = {name: name.replace(", ", "-").replace(" ", "-") for name in OURS}  # system -> server model name
    lines = [
        'default_model = "fp32"',
        "[server]",
        "grace_seconds = 5",
        "max_queue_ms = 0",
        "cache_mb = 0",
        "[runtime]",
        'provider = "cpu"',
    ]
    for name, (artifact, backend) in OURS.items():
        art = artifacts[artifact]
        engines[name] = LocalEngine.of(str(art), runtime=RuntimeConfig(provider="cpu", backend=backend), cache_mb=0)  # type: ignore[arg-type]
        lines += ["[[models]]", f'name = "{served[name]}"', f'artifact = "{art}"', f'backend = "{backend}"']
    config = work / "peers-server.toml"
    config.write_text("\n".join(lines) + "\n")
    proc, target, _ = start_server(config)
    client = RerankerClient(target, timeout=600)

    def local(name: str) -> Scorer:
        return lambda q, c: np.array(engines[name].scores(q, [i for i, _ in c], [t for _, t in c])[0], np.float32)

    def remote(name: str) -> Scorer:
        def score(q: str, c: list[tuple[str, str]]) -> np.ndarray:
            res = client.rerank(q, c, model=served[name])
            out = np.zeros(len(c), np.float32)
            for r in res.results:
                out[r.index] = r.score
            return out

        return score

    for name in OURS:
        out[f"ours, teacher {name}, gRPC"] = remote(name)
        out[f"ours, teacher {name}, in process"] = local(name)

    def close() -> None:
        client.close()
        proc.terminate()
        proc.wait(timeout=60)
        for e in engines.values():
            e.close()

    return out, close


def timed(score: Scorer, requests: list[tuple[str, list]]) -> float:
    """Pairs per second over ``requests``."""
    started = time.perf_counter()
    for q, c in requests:
        score(q, c)
    return sum(len(c) for _, c in requests) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="BERT-cat checkpoint (its weights are every peer's)")
    ap.add_argument("--queries", type=int, default=5, help="DL19 queries timed (BM25 top-100 each)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default="16,32,64", help="CrossEncoder batch sizes (best is reported)")
    ap.add_argument("--quality-queries", type=int, default=0, help="DL19 queries for nDCG@10 (43 = all; 0 = skip)")
    ap.add_argument("--calibration", type=int, default=300, help="MS MARCO dev pairs for OpenVINO int8")
    ap.add_argument("--skip", default="", help="';'-separated system names to leave out")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-peers")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from reranker.models.checkpoint import load_checkpoint
    from reranker.models.hf_export import to_hf_cross_encoder
    from reranker_export.onnx_export import export_model
    from reranker_export.quantize import calibration_pairs

    command = "python -m studies.peers " + " ".join(f"{k}={v}" for k, v in vars(args).items())  # paths as given
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = load_checkpoint(args.teacher).config
    max_length = cfg.query_max_len + cfg.passage_max_len
    hf_dir = to_hf_cross_encoder(args.teacher, args.work / "hf-teacher")
    artifacts = {}
    calibration = calibration_pairs(ROOT / "data/msmarco-passage/msmarco-dev-small-600", args.calibration, run="bm25")
    for a, (p, exclude) in ARTIFACTS.items():
        artifacts[a] = args.work / f"onnx-teacher-{a}"
        if not (artifacts[a] / "manifest.json").is_file():
            export_model(
                args.teacher,
                artifacts[a],
                precision=p,
                int8_exclude=exclude,
                calibration=calibration if p == "int8-static" else (),
            )
    folder = DataFolder.open(DL19)
    run = folder.run("bm25")
    qids = sorted(run)
    requests = [(folder.queries[q], [(p, folder.passages[p]) for p, _ in run[q][:100]]) for q in qids[: args.queries]]
    systems: dict[str, Callable[[int], Scorer] | Scorer] = {}
    errors: dict[str, str] = {}
    peers = {
        "ST, torch fp32": lambda: st_scorer(cross_encoder(hf_dir, "torch", max_length)),
        "ST, torch bf16 autocast": lambda: st_scorer(cross_encoder(hf_dir, "torch", max_length), bf16=True),
        "ST, OpenVINO fp32": lambda: st_scorer(
            cross_encoder(hf_dir, "openvino", max_length, model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}})
        ),
        "ST, OpenVINO default precision": lambda: st_scorer(cross_encoder(hf_dir, "openvino", max_length)),
        "ST, OpenVINO int8 static": lambda: st_scorer(ov_int8_static(cross_encoder(hf_dir, "openvino", max_length), calibration)),
    }
    skip = set(filter(None, args.skip.split(";")))
    for name, make in peers.items():
        if name in skip:
            continue
        try:
            systems[name] = make()
        except Exception as exc:  # a peer that cannot load is a result
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
    batches = [int(b) for b in args.batches.split(",")]
    quality_reqs = [(folder.queries[q], [(p, folder.passages[p]) for p, _ in run[q][:100]]) for q in qids[: args.quality_queries]]
    extra, extra_errors, extra_versions = start_runners(hf_dir, requests, quality_reqs, batches, max_length, args.work, skip)
    errors.update(extra_errors)
    systems.update(extra)
    ours, close = our_scorers(artifacts, args.work)
    systems.update({k: v for k, v in ours.items() if k not in skip})
    try:
        speed: dict[str, list[float]] = {k: [] for k in systems}
        best_batch: dict[str, int] = {}
        for r in range(args.rounds + 1):
            names = list(systems) if r % 2 else list(systems)[::-1]
            for name in names:
                s = systems[name]
                try:
                    if name in extra:
                        rates = extra[name].time(name, None if r else 1)
                        best_batch[name] = max(rates, key=rates.__getitem__)
                        rate = rates[best_batch[name]]
                    elif name.startswith("ST"):
                        rates = {b: timed(s(b), requests if r else requests[:1]) for b in batches}  # type: ignore[operator]
                        best_batch[name] = max(rates, key=rates.__getitem__)
                        rate = rates[best_batch[name]]
                    else:
                        rate = timed(s, requests if r else requests[:1])  # type: ignore[arg-type]
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"[:500]
                    continue
                if r:
                    speed[name].append(rate)
                    print(f"round {r} {name:40s} {rate:8.1f} pairs/s", flush=True)
        quality = quality_of(systems, best_batch, folder, qids[: args.quality_queries], extra) if args.quality_queries else {}
    finally:
        close()
        close_runners(extra)
    report = report_of(speed, best_batch, quality, errors)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "machine": machine([]),
                    "pairs": sum(len(c) for _, c in requests),
                    "teacher": str(args.teacher),
                    "venvs": extra_versions,
                    **report,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )


def quality_of(
    systems: dict[str, Any], best_batch: dict[str, int], folder: DataFolder, qids: list[str], extra: dict[str, Any] | None = None
) -> dict[str, dict[str, float]]:
    """nDCG@10 on ``qids``' BM25 top-100 and the largest |score - ST torch fp32 score| per system."""
    from reranker.eval.irm import evaluate_with_ir_measures

    run = folder.run("bm25")
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, s in systems.items():
        if extra and name in extra:  # scored in its runner, on the same queries in the same order
            try:
                scores[name] = dict(zip(qids, extra[name].scores(name, best_batch.get(name, 32)), strict=True))
                print(f"quality: {name} scored (in its venv)", flush=True)
            except Exception as exc:
                print(f"quality: {name} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        score = s(best_batch.get(name, 32)) if name.startswith("ST") else s
        scores[name] = {}
        for q in qids:
            cands = [(p, folder.passages[p]) for p, _ in run[q][:100]]
            scores[name][q] = score(folder.queries[q], cands)
        print(f"quality: {name} scored", flush=True)
    ref = scores.get("ST, torch fp32")
    out = {}
    for name, per_q in scores.items():
        ranked = {q: sorted(zip([p for p, _ in run[q][:100]], per_q[q].tolist(), strict=True), key=lambda x: -x[1]) for q in qids}
        m = evaluate_with_ir_measures(folder.qrels, ranked, 2)
        out[name] = {"ndcg@10": round(m["ndcg@10"], 4), "queries": len(qids)}
        if ref is not None:
            out[name]["max_abs_diff_vs_st_fp32"] = float(max(np.abs(per_q[q] - ref[q]).max() for q in qids))
    base = out.get("ST, torch fp32", {}).get("ndcg@10")
    for v in out.values():
        if base is not None:
            v["ndcg@10_change"] = round(v["ndcg@10"] - base, 4)
    return out


def report_of(speed: dict[str, list[float]], best_batch: dict[str, int], quality: dict, errors: dict) -> dict:
    rows = {}
    for name, rates in speed.items():
        if rates:
            rows[name] = {
                "pairs_per_s": round(statistics.median(rates), 1),
                "rounds": [round(x, 1) for x in rates],
                "batch": best_batch.get(name),
                **quality.get(name, {}),
            }
    fastest_peer = max((r["pairs_per_s"] for n, r in rows.items() if not n.startswith("ours")), default=None)
    print("\n| system | pairs/s (median of rounds) | best batch | nDCG@10 change | max score diff |\n|---|---|---|---|---|")
    for name, r in sorted(rows.items(), key=lambda x: -x[1]["pairs_per_s"]):
        if fastest_peer:
            r["vs_fastest_peer"] = round(r["pairs_per_s"] / fastest_peer, 2)
        print(
            f"| {name} | {r['pairs_per_s']} | {r['batch'] or '-'} | {r.get('ndcg@10_change', '-')} | "
            f"{r.get('max_abs_diff_vs_st_fp32', '-')} |"
        )
    for name, why in errors.items():
        print(f"| {name} | not run: {why} | | | |")
    return {"systems": rows, "not_run": errors}


if __name__ == "__main__":
    main()
