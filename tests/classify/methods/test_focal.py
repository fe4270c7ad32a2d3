"""Tests for cytolt.classify.methods.focal: softmax focal loss on hand-worked cases, limits and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.classify.methods.focal import FOCAL, SoftmaxFocalLoss, softmax_focal_loss
from tests.classify.methods import tiny_context


def test_hand_worked_value() -> None:
    # K = 2, logits (0, ln 3): p_1 = 3/4; FL = (1 - 3/4)^2 * -ln(3/4) = 0.0625 * 0.287682
    logits = torch.tensor([[0.0, math.log(3.0)]])
    loss = softmax_focal_loss(logits, torch.tensor([1]), gamma=2.0)
    assert math.isclose(float(loss), 0.0625 * -math.log(0.75), rel_tol=1e-6)
    # the same row with label 0: p_0 = 1/4 -> (3/4)^2 * -ln(1/4)
    loss0 = softmax_focal_loss(logits, torch.tensor([0]), gamma=2.0, reduction="none")
    assert math.isclose(float(loss0[0]), 0.5625 * math.log(4.0), rel_tol=1e-6)


def test_gamma_zero_is_cross_entropy_and_confident_rows_vanish() -> None:
    torch.manual_seed(0)
    z, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(softmax_focal_loss(z, y, gamma=0.0), torch.nn.functional.cross_entropy(z, y))
    confident = torch.tensor([[20.0, 0.0, 0.0]])
    assert float(softmax_focal_loss(confident, torch.tensor([0]))) < 1e-15
    # focal <= CE row by row, strictly where p_y < 1
    assert bool(
        (
            softmax_focal_loss(z, y, reduction="none") < softmax_focal_loss(z, y, gamma=0, reduction="none")
        ).all()
    )


def test_gradient_matches_finite_differences() -> None:
    torch.manual_seed(1)
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    assert torch.autograd.gradcheck(lambda t: softmax_focal_loss(t, y, gamma=2.0), (z,))


def test_module_and_spec() -> None:
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        SoftmaxFocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        softmax_focal_loss(torch.zeros(1, 2), torch.tensor([0]), gamma=-0.5)
    loss = FOCAL.build_loss(tiny_context(options={"focal_gamma": 1.0}))
    assert isinstance(loss, SoftmaxFocalLoss) and loss.gamma == 1.0
    assert FOCAL.build_loss(tiny_context()).gamma == 2.0
