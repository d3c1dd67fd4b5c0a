"""Training hyper-parameters (torch-free, so that the CLI can describe them cheaply)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from reranker.errors import ConfigError

LOSS_NAMES = ("margin-mse", "ranknet", "pointwise-mse")
LossName = Literal["margin-mse", "ranknet", "pointwise-mse"]
PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["auto", "fp32", "bf16"]


VAL_FIELDS = ("val_fraction", "val_seed", "val_max_queries", "val_run", "val_depth", "eval_batch_size")
"""The settings that decide the validation split and how it is scored."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    loss: LossName = "margin-mse"
    """``margin-mse`` (needs teacher scores), ``ranknet`` (labels) or ``pointwise-mse`` (scores)."""
    steps: int = 1000
    """Optimiser steps."""
    stop_at: int = 0
    """End this invocation after step N (0 = at ``steps``); the schedule still follows ``steps``, so
    rerunning with ``--resume`` and a larger value continues as if the run had never stopped."""
    batch_size: int = 16
    """Triples per step."""
    lr: float = 3e-5
    """Peak learning rate (AdamW)."""
    head_lr: float = 0.0
    """Peak learning rate of the parameters the architecture starts at random (TK's contextualiser,
    mixer and kernel weights; the score heads of BERT-cat and PreTT; ColBERT's projection); 0 = ``lr``."""
    precision: Precision = "auto"
    """``bf16``: forward passes under torch's bf16 autocast (weights, optimiser and loss stay fp32);
    about 1.5-2x the steps per hour on CPUs with AVX-512 bf16, 13x slower on AVX2-only CPUs (emulated).
    ``auto``: bf16 on CUDA and on CPUs with native bf16 (``reranker.machine``), fp32 elsewhere; a run
    resumed on another machine may change precision. Validation always runs in fp32."""
    warmup_steps: int = 100
    """Linear warm-up steps; the rate then decays linearly to 0 at ``steps``."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorms)."""
    grad_clip: float = 1.0
    """Gradient-norm clipping; 0 disables."""
    seed: int = 42
    """Seed of the initial RNG state and of each epoch's data order."""
    checkpoint_every: int = 200
    """Save a resumable checkpoint every N steps (and at the end)."""
    validate_every: int = 200
    """Validation nDCG@10 every N steps (and at the end); 0 = only at the end."""
    val_fraction: float = 0.1
    """Fraction of the training queries with judgments held out for validation."""
    val_seed: int = 0
    """Seed of the validation split (keep it fixed across runs so that splits agree)."""
    val_max_queries: int = 50
    """At most this many validation queries (the first by id order of the split)."""
    val_run: str = "bm25,qrels"
    """Candidates re-ranked for validation: first run of this list that a folder has."""
    val_depth: int = 100
    """Candidates per validation query."""
    eval_batch_size: int = 64
    """Pairs per batch when scoring for validation."""

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"unknown loss {self.loss!r}; allowed: {', '.join(LOSS_NAMES)}")
        positive = ("steps", "batch_size", "checkpoint_every", "val_depth", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not (self.head_lr >= 0 and math.isfinite(self.head_lr)):
            raise ConfigError(f"head_lr must be >= 0 (0 = lr), got {self.head_lr}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.stop_at < 0 or self.stop_at > self.steps:
            raise ConfigError(f"stop_at must be in [0, steps={self.steps}], got {self.stop_at}")
        for name in ("warmup_steps", "validate_every", "val_max_queries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")

    @property
    def last_step(self) -> int:
        """The step this invocation ends at."""
        return self.stop_at or self.steps

    def learning_rate(self, step: int) -> float:
        """Rate for optimiser step ``step`` (0-based): linear warm-up, then linear decay."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        remaining = max(self.steps - step, 0) / max(self.steps - self.warmup_steps, 1)
        return self.lr * remaining
