"""AdamW for training: parameter groups (weights vs biases and LayerNorms, pretrained vs started at
random) and its state saved and loaded by parameter name in safetensors files (no pickle)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reranker.training.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.optim.AdamW, list[str]]:
    """AdamW over four groups: (weights, biases/LayerNorms) x (from the base, started at random).

    Each group's ``lr_scale`` multiplies the scheduled rate: ``head_lr / lr`` for the parameters the
    architecture names in ``fresh_parameters``, 1 for the rest.
    """
    fresh = tuple(getattr(model, "fresh_parameters", ()))
    head_scale = cfg.head_lr / cfg.lr if cfg.head_lr else 1.0
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = []
    names: list[str] = []
    for is_fresh in (False, True):
        for decay in (True, False):
            members = [(n, p) for n, p in named if (bool(fresh) and n.startswith(fresh)) == is_fresh and (p.ndim >= 2) == decay]
            if not members:
                continue
            names += [n for n, _ in members]
            groups.append(
                {
                    "params": [p for _, p in members],
                    "weight_decay": cfg.weight_decay if decay else 0.0,
                    "lr_scale": head_scale if is_fresh else 1.0,
                }
            )
    return torch.optim.AdamW(groups, lr=cfg.lr), names


def save_optimizer(opt: torch.optim.AdamW, names: Sequence[str], path: Path) -> None:
    params = [p for group in opt.param_groups for p in group["params"]]
    tensors: dict[str, torch.Tensor] = {}
    for name, param in zip(names, params, strict=True):
        for key, value in opt.state.get(param, {}).items():
            tensors[f"{name}::{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    save_file(tensors, str(path))


def load_optimizer(opt: torch.optim.AdamW, names: Sequence[str], path: Path) -> None:
    tensors = load_file(str(path))
    params = [p for group in opt.param_groups for p in group["params"]]
    for name, param in zip(names, params, strict=True):
        state = {
            key.split("::", 1)[1]: value.to(param.device) if value.ndim else value
            for key, value in tensors.items()
            if key.split("::", 1)[0] == name
        }
        if state:
            opt.state[param] = state
