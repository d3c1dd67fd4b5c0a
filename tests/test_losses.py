"""Losses against hand-computed numbers; only the student receives gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from reranker.training.losses import get_loss, margin_mse, pointwise_mse, ranknet  # noqa: E402


def test_margin_mse_hand_computed() -> None:
    # margins: student (2-1)=1, (0-2)=-2 ; teacher (7-4)=3, (1-1)=0 -> ((1-3)^2 + (-2-0)^2)/2 = 4
    loss = margin_mse(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 2.0]), torch.tensor([7.0, 1.0]), torch.tensor([4.0, 1.0]))
    assert loss.item() == pytest.approx(4.0)


def test_margin_mse_ignores_score_offsets() -> None:
    """Students on another scale are trained on the margin, not the raw scores."""
    s_pos, s_neg = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])
    t_pos, t_neg = s_pos + 100.0, s_neg + 100.0
    assert margin_mse(s_pos, s_neg, t_pos, t_neg).item() == pytest.approx(0.0)
    assert pointwise_mse(s_pos, s_neg, t_pos, t_neg).item() == pytest.approx(10000.0)


def test_only_student_gets_gradients() -> None:
    s_pos = torch.tensor([1.0, 2.0], requires_grad=True)
    s_neg = torch.tensor([0.5, 0.0], requires_grad=True)
    t_pos = torch.tensor([3.0, 1.0], requires_grad=True)
    t_neg = torch.tensor([0.0, 1.0], requires_grad=True)
    for fn in (margin_mse, pointwise_mse):
        for t in (s_pos, s_neg, t_pos, t_neg):
            t.grad = None
        fn(s_pos, s_neg, t_pos, t_neg).backward()
        assert s_pos.grad is not None and s_neg.grad is not None
        assert t_pos.grad is None and t_neg.grad is None
    # d/ds+ of mean((m_s - m_t)^2) = 2 (m_s - m_t) / n
    s_pos.grad = None
    margin_mse(s_pos, s_neg, t_pos, t_neg).backward()
    expected = 2 * ((s_pos - s_neg) - (t_pos - t_neg)).detach() / 2
    torch.testing.assert_close(s_pos.grad, expected)


def test_ranknet_hand_computed() -> None:
    # log(1 + exp(-1)) = 0.3132617, log(1 + exp(2)) = 2.1269280
    loss = ranknet(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert loss.item() == pytest.approx((0.3132617 + 2.1269280) / 2, abs=1e-6)


def test_shape_checks_and_unknown_loss() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        margin_mse(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="1-d"):
        ranknet(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(Exception, match="allowed: margin-mse"):
        get_loss("hinge")
