"""Polar IoU loss and polar centerness (PolarMask, Xie et al. 2020) on hand-worked rays."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.losses.polar_iou import RAY_EPS, PolarIoULoss, polar_centerness, polar_iou_loss


def rays(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


def test_identical_rays_give_zero_loss():
    d = torch.rand(5, 36, dtype=torch.float64) * 30 + 1
    assert torch.allclose(polar_iou_loss(d, d.clone(), reduction="none"), torch.zeros(5, dtype=torch.float64))


def test_hand_worked_values():
    # every ray half the target: log(sum 2 / sum 1) = log 2, whatever the number of rays
    assert polar_iou_loss(rays(1, 1, 1, 1), rays(2, 2, 2, 2)).item() == pytest.approx(math.log(2))
    # one ray long, one short: max sum 3 + 2 = 5, min sum 2 + 1 = 3
    assert polar_iou_loss(rays(1, 3), rays(2, 2)).item() == pytest.approx(math.log(5 / 3))


def test_scale_free_and_symmetric():
    d, t = torch.rand(4, 36, dtype=torch.float64) + 0.5, torch.rand(4, 36, dtype=torch.float64) + 0.5
    base = polar_iou_loss(d, t, reduction="none")
    assert torch.allclose(polar_iou_loss(7.5 * d, 7.5 * t, reduction="none"), base)
    assert torch.allclose(polar_iou_loss(t, d, reduction="none"), base)
    assert (base > 0).all()


def test_circle_prediction_against_a_square_target():
    # a disc of radius r inscribed in a square of half-side r: rays r against r / max(|cos|, |sin|)
    angles = torch.arange(36, dtype=torch.float64) * (2 * math.pi / 36)
    square = 10.0 / torch.maximum(angles.cos().abs(), angles.sin().abs())
    disc = torch.full_like(square, 10.0)
    expected = math.log(square.sum().item() / disc.sum().item())
    assert polar_iou_loss(disc[None], square[None]).item() == pytest.approx(expected)
    assert 0.0 < expected < math.log(math.sqrt(2))  # the square's rays lie between r and r sqrt(2)


def test_gradient_signs_and_values():
    pred = rays(3.0, 1.0, 2.0).requires_grad_()
    target = rays(2.0, 2.0, 2.0)
    polar_iou_loss(pred, target).backward()
    grad = pred.grad[0]
    assert grad[0] > 0  # too long: descent shortens it
    assert grad[1] < 0  # too short: descent lengthens it
    longer, shorter = 3 + 2 + 2, 2 + 1 + 2  # sum max, sum min
    assert grad[0].item() == pytest.approx(1 / longer)
    assert grad[1].item() == pytest.approx(-1 / shorter)


def test_gradients_finite_at_degenerate_rays():
    # target rays of length 0 (a location at the rim) and predictions underflowed to 0
    pred = torch.tensor([[0.0, 5.0, 1e-12], [2.0, 2.0, 2.0]], requires_grad=True)
    target = torch.tensor([[0.0, 4.0, 3.0], [0.0, 0.0, 0.0]])
    loss = polar_iou_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_weight_and_avg_factor():
    d = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    t = torch.tensor([[2.0, 2.0], [2.0, 2.0]])  # losses log 2 and 0
    w = torch.tensor([0.5, 1.0])
    assert polar_iou_loss(d, t, weight=w, reduction="sum").item() == pytest.approx(0.5 * math.log(2))
    assert polar_iou_loss(d, t, weight=w, avg_factor=0.25).item() == pytest.approx(2 * math.log(2), rel=1e-5)


def test_module_matches_function():
    d, t = torch.rand(3, 36) + 0.1, torch.rand(3, 36) + 0.1
    loss = PolarIoULoss(loss_weight=2.0)
    assert torch.allclose(loss(d, t), 2 * polar_iou_loss(d, t))
    assert loss(d, t, reduction_override="none").shape == (3,)
    with pytest.raises(ValueError, match="reduction"):
        PolarIoULoss(reduction="median")


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(N, R\)"):
        polar_iou_loss(torch.ones(3, 36), torch.ones(3, 35))
    with pytest.raises(ValueError, match=r"\(N, R\)"):
        polar_centerness(torch.ones(36))


def test_polar_centerness():
    assert polar_centerness(torch.full((1, 36), 12.0)).item() == pytest.approx(1.0)  # disc centre
    assert polar_centerness(torch.tensor([[1.0, 4.0, 2.0]])).item() == pytest.approx(0.5)  # sqrt(1 / 4)
    rim = polar_centerness(torch.tensor([[0.0, 10.0]]))
    assert rim.item() == pytest.approx(math.sqrt(RAY_EPS / 10.0))
    # off-centre in a disc of radius 10 at distance 5: rays from 5 to 15 -> sqrt(1/3)
    assert polar_centerness(torch.tensor([[5.0, 15.0, 10.0]])).item() == pytest.approx(math.sqrt(1 / 3))
