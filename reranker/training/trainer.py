"""The training loop: Margin-MSE / RankNet / pointwise MSE over triples, with checkpoints that
resume exactly, validation nDCG@10 on held-out training queries, and a JSON-lines log.

Resuming is exact because nothing depends on hidden state that is not saved: the data order of
each epoch is a permutation drawn from ``(seed, epoch)``, the learning rate is a function of the
step, and the optimiser moments and torch's RNG state are saved in safetensors files. A checkpoint
without them (the compact fp16 state a training campaign commits) resumes too, with the AdamW
moments started afresh: the data order and the schedule still continue where they stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from reranker.data import Collection, ScoredTriple, Triple, validation_queries
from reranker.errors import ConfigError
from reranker.eval.metrics import evaluate_per_query, rel_level_for
from reranker.machine import auto_precision
from reranker.models.checkpoint import Loaded, load_checkpoint, save_checkpoint
from reranker.tokenization import Preprocessor
from reranker.training.config import TrainConfig
from reranker.training.inference import rerank, to_tokens
from reranker.training.losses import get_loss
from reranker.training.optim import load_optimizer, make_optimizer, save_optimizer

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "log.jsonl"
STATE_FILE = "trainer_state.json"
PAUSED = "paused"
"""``summary["status"]`` of a run that stopped at its deadline with steps left (``done`` otherwise)."""


class Trainer:
    """Trains ``loaded.model`` on triples; writes a self-describing model directory to ``out``."""

    def __init__(
        self,
        loaded: Loaded,
        collection: Collection,
        triples: Sequence[Triple],
        cfg: TrainConfig,
        out: str | Path,
        *,
        info: dict[str, Any] | None = None,
    ) -> None:
        _, needs_scores = get_loss(cfg.loss)
        if not triples:
            raise ConfigError("no training triples")
        if needs_scores and not isinstance(triples[0], ScoredTriple):
            raise ConfigError(
                f"loss {cfg.loss} needs teacher scores: give a score file written by "
                "'reranker score' (5 columns), not plain triples"
            )
        self.loaded, self.collection, self.cfg, self.out = loaded, collection, cfg, Path(out)
        self.info = dict(info or {})
        self.loss_fn, self.needs_scores = get_loss(cfg.loss)
        val = validation_queries(collection.qrels, cfg.val_fraction, cfg.val_seed)
        self.val_qids = sorted(val)[: cfg.val_max_queries]
        held_out = set(val)
        self.triples = [t for t in triples if t.qid not in held_out]
        if not self.triples:
            raise ConfigError("every triple belongs to a validation query; lower --val-fraction")
        missing = {t.qid for t in self.triples} - set(collection.queries)
        if missing:
            raise ConfigError(f"{len(missing)} triple query ids have no query text, e.g. {sorted(missing)[:3]}")
        self.prep = Preprocessor(loaded.tokenizer, loaded.config)
        device = next(loaded.model.parameters()).device
        self.precision = auto_precision(device.type) if cfg.precision == "auto" else cfg.precision
        if loaded.config.freeze_word_embeddings:
            for name, param in loaded.model.named_parameters():
                if name.endswith("word_embeddings.weight"):
                    param.requires_grad_(False)
        self.opt, self.param_names = make_optimizer(loaded.model, cfg)
        self._val_candidates: dict[str, list[tuple[str, float]]] | None = None
        self.step = 0
        self.best: dict[str, Any] | None = None
        log.info(
            "training %s with %s: %d triples (%d held out for %d validation queries)",
            loaded.config.arch,
            cfg.loss,
            len(self.triples),
            len(triples) - len(self.triples),
            len(self.val_qids),
        )

    # --- data -------------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> list[int]:
        n, bs = len(self.triples), self.cfg.batch_size
        out: list[int] = []
        position = step * bs
        while len(out) < bs:
            epoch, offset = divmod(position, n)
            gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            perm = torch.randperm(n, generator=gen).tolist()
            take = min(bs - len(out), n - offset)
            out.extend(perm[offset : offset + take])
            position += take
        return out

    def _loss(self, batch: Sequence[Triple]) -> torch.Tensor:
        device = next(self.loaded.model.parameters()).device
        queries = [self.collection.queries[t.qid] for t in batch]
        texts = [self.collection.passages[t.pos] for t in batch] + [self.collection.passages[t.neg] for t in batch]
        q = to_tokens(self.prep.queries(queries + queries), device)
        p = to_tokens(self.prep.passages(texts), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            scores = self.loaded.model.score(q, p).float()
        s_pos, s_neg = scores[: len(batch)], scores[len(batch) :]
        if not self.needs_scores:
            return self.loss_fn(s_pos, s_neg)
        t_pos = torch.tensor([t.pos_score for t in batch], device=device)  # type: ignore[attr-defined]
        t_neg = torch.tensor([t.neg_score for t in batch], device=device)  # type: ignore[attr-defined]
        return self.loss_fn(s_pos, s_neg, t_pos, t_neg)

    # --- validation ---------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Mean metrics over the validation queries; the relevance level is each folder's own
        (grade >= 2 on graded TREC qrels, >= 1 on binary MS MARCO qrels)."""
        if not self.val_qids:
            return {}
        if self._val_candidates is None:
            cands = self.collection.candidates(self.cfg.val_run, self.cfg.val_depth)
            self._val_candidates = {q: cands[q] for q in self.val_qids if q in cands}
        run = rerank(
            self.loaded,
            self.collection.queries,
            self.collection.passages,
            self._val_candidates,
            batch_size=self.cfg.eval_batch_size,
        )
        per_query: dict[str, dict[str, float]] = {}
        for folder in self.collection.folders:
            qrels = {q: folder.qrels[q] for q in run if q in folder.qrels}
            if qrels:
                per_query.update(evaluate_per_query(qrels, run, rel_level=rel_level_for(folder.qrels)))
        names = ("ndcg@10", "mrr@10", "recall@100")
        n = len(per_query)
        return {**{k: sum(v[k] for v in per_query.values()) / max(n, 1) for k in names}, "queries": float(n)}

    # --- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "train_config": dataclasses.asdict(self.cfg), "best": self.best}

    def save_checkpoint(self) -> None:
        ckpt = self.out / CHECKPOINT_DIR
        tmp = self.out / (CHECKPOINT_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(tmp, self.loaded, {"step": self.step, **self.info})
        save_optimizer(self.opt, self.param_names, tmp / "optimizer.safetensors")
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        (tmp / STATE_FILE).write_text(json.dumps(self._state(), indent=2) + "\n")
        shutil.rmtree(ckpt, ignore_errors=True)
        os.replace(tmp, ckpt)

    def resume(self) -> bool:
        """Continue from ``out/checkpoint`` if present; returns whether it did.

        The weights may be a compact checkpoint (fp16, word embeddings read from the base model);
        without ``optimizer.safetensors`` the AdamW moments start afresh, without ``rng.safetensors``
        dropout's RNG is seeded from ``(seed, step)``.
        """
        ckpt = self.out / CHECKPOINT_DIR
        if not (ckpt / STATE_FILE).is_file():
            return False
        state = json.loads((ckpt / STATE_FILE).read_text())
        # a run may be lengthened or paused, and change precision with the machine; the rest must match
        free = ("steps", "stop_at", "precision")
        defaults = dataclasses.asdict(TrainConfig())  # settings added since the checkpoint was written
        saved = {k: v for k, v in {**defaults, **state["train_config"]}.items() if k not in free}
        now = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in free}
        if saved != now:
            diff = sorted(k for k in now if saved.get(k) != now[k])
            raise ConfigError(f"cannot resume {ckpt}: training settings differ in {diff}")
        device = next(self.loaded.model.parameters()).device
        weights = load_checkpoint(ckpt).model.state_dict()
        own = self.loaded.model.state_dict()
        self.loaded.model.load_state_dict({n: t.to(device=device, dtype=own[n].dtype) for n, t in weights.items()})
        self.step, self.best = int(state["step"]), state.get("best")
        if (ckpt / "optimizer.safetensors").is_file():
            load_optimizer(self.opt, self.param_names, ckpt / "optimizer.safetensors")
        else:
            log.warning("%s has no optimiser state: AdamW moments start afresh at step %d", ckpt, self.step)
        if (ckpt / "rng.safetensors").is_file():
            torch.set_rng_state(load_file(str(ckpt / "rng.safetensors"))["torch_rng"])
        else:
            torch.manual_seed(self.cfg.seed * 100_003 + self.step)
        self._truncate_log(self.step)
        log.info("resumed from %s at step %d", ckpt, self.step)
        return True

    def _truncate_log(self, step: int) -> None:
        path = self.out / LOG_FILE
        if path.is_file():
            keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in keep))

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    # --- loop ---------------------------------------------------------------------------------
    def train(
        self, *, resume: bool = False, progress: bool = True, deadline: float | None = None, stop: Any = None
    ) -> dict[str, Any]:
        """Train to ``cfg.last_step``; returns a summary whose ``status`` is ``done`` or ``paused``.

        ``deadline`` (``time.time()`` seconds): stop after the first step that ends past it, save a
        checkpoint and return ``status = "paused"`` without writing the final model; ``--resume``
        continues from there. ``stop`` (a ``threading.Event``, e.g. set by SIGTERM) pauses the same way.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if not (resume and self.resume()):
            torch.manual_seed(self.cfg.seed)
            (self.out / LOG_FILE).unlink(missing_ok=True)
        model, cfg = self.loaded.model, self.cfg
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        running, started = 0.0, time.perf_counter()
        bar = tqdm(
            total=cfg.last_step, initial=self.step, desc=f"train {self.loaded.config.arch}", unit="step", disable=not progress
        )
        while self.step < cfg.last_step:
            for group in self.opt.param_groups:
                group["lr"] = cfg.learning_rate(self.step) * group["lr_scale"]
            batch = [self.triples[i] for i in self._batch_indices(self.step)]
            loss = self._loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {self.step}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.opt.step()
            self.step += 1
            running += loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            record: dict[str, Any] = {"step": self.step, "loss": loss.item(), "lr": cfg.learning_rate(self.step - 1)}
            at_end = self.step == cfg.last_step
            if (cfg.validate_every and self.step % cfg.validate_every == 0) or at_end:
                metrics = self.validate()
                model.train()
                if metrics:
                    record["validation"] = metrics
                    if self.best is None or metrics["ndcg@10"] > self.best["ndcg@10"]:
                        self.best = {"step": self.step, **metrics}
                    bar.write(
                        f"step {self.step}: validation nDCG@10 {metrics['ndcg@10']:.4f} "
                        f"MRR@10 {metrics['mrr@10']:.4f} ({metrics['queries']} queries)"
                    )
            self._log(record)
            if self.step % cfg.checkpoint_every == 0 or at_end:
                self.save_checkpoint()
            if not at_end and ((deadline is not None and time.time() >= deadline) or (stop is not None and stop.is_set())):
                self.save_checkpoint()
                bar.close()
                log.info("deadline reached at step %d of %d: paused (continue with --resume)", self.step, cfg.last_step)
                return {
                    "status": PAUSED,
                    "steps": self.step,
                    "best_validation": self.best,
                    "seconds_this_run": round(time.perf_counter() - started, 1),
                }
        bar.close()
        summary = {
            "status": "done",
            "steps": self.step,
            "seconds_this_run": round(time.perf_counter() - started, 1),
            "best_validation": self.best,
            "train_config": dataclasses.asdict(cfg),
            "precision": self.precision,
            "triples": len(self.triples),
            "validation_queries": self.val_qids,
            **self.info,
        }
        save_checkpoint(self.out, self.loaded, summary)
        return summary
