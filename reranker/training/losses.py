"""Pairwise and pointwise losses of Hofstätter et al. 2020 (arXiv 2010.02666), as pure functions.

Teacher scores are detached inside each loss: only the student ever gets gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from reranker.errors import ConfigError


def _check(*tensors: Tensor) -> None:
    shape = tensors[0].shape
    if len(shape) != 1:
        raise ValueError(f"scores must be 1-d (batch,), got shape {tuple(shape)}")
    for t in tensors[1:]:
        if t.shape != shape:
            raise ValueError(f"score shapes differ: {tuple(shape)} vs {tuple(t.shape)}")


def margin_mse(s_pos: Tensor, s_neg: Tensor, t_pos: Tensor, t_neg: Tensor) -> Tensor:
    """Margin-MSE: mean(((s+ - s-) - (t+ - t-))^2), the paper's Eq. 1.

    >>> margin_mse(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0]),
    ...            torch.tensor([5.0, 2.0]), torch.tensor([4.0, 0.0])).item()
    2.5
    """
    _check(s_pos, s_neg, t_pos, t_neg)
    target = (t_pos - t_neg).detach()
    return ((s_pos - s_neg) - target).pow(2).mean()


def ranknet(s_pos: Tensor, s_neg: Tensor) -> Tensor:
    """RankNet on labels: BCEWithLogits(s+ - s-, 1) = mean(log(1 + exp(-(s+ - s-)))).

    >>> round(ranknet(torch.tensor([0.0]), torch.tensor([0.0])).item(), 6)
    0.693147
    """
    _check(s_pos, s_neg)
    diff = s_pos - s_neg
    return torch.nn.functional.binary_cross_entropy_with_logits(diff, torch.ones_like(diff))


def pointwise_mse(s_pos: Tensor, s_neg: Tensor, t_pos: Tensor, t_neg: Tensor) -> Tensor:
    """Pointwise MSE on the raw scores of both passages (the paper's other baseline).

    >>> pointwise_mse(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([1.0])).item()
    2.5
    """
    _check(s_pos, s_neg, t_pos, t_neg)
    student = torch.cat([s_pos, s_neg])
    teacher = torch.cat([t_pos, t_neg]).detach()
    return (student - teacher).pow(2).mean()


LOSSES: dict[str, tuple[Callable[..., Tensor], bool]] = {
    "margin-mse": (margin_mse, True),
    "ranknet": (ranknet, False),
    "pointwise-mse": (pointwise_mse, True),
}
"""name -> (function, needs teacher scores)."""


def get_loss(name: str) -> tuple[Callable[..., Tensor], bool]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]
