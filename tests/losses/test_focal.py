"""Tests for cytolt.losses.focal: the formula, its limits, gradients and the mmdet-style module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from cytolt.losses.focal import FocalLoss, sigmoid_focal_loss


def test_hand_computed_case() -> None:
    # z = 0 -> p = 0.5 and BCE = log 2 for either target; (1 - p_t)^2 = 0.25.
    # positive: alpha 0.25 * 0.25 * log 2; negative: (1 - 0.25) * 0.25 * log 2.
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    loss = sigmoid_focal_loss(logits, targets, reduction="none")
    expected = torch.tensor([[0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]])
    torch.testing.assert_close(loss, expected)


def test_gamma_zero_without_alpha_is_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = (torch.rand(6, 4) > 0.7).float()
    loss = sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, targets))


def test_matches_torchvision() -> None:
    torch.manual_seed(1)
    logits = torch.randn(10, 5) * 3
    targets = (torch.rand(10, 5) > 0.8).float()
    for alpha, tv_alpha in ((0.25, 0.25), (None, -1)):
        ours = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=1.5, reduction="none")
        theirs = tv_sigmoid_focal_loss(logits, targets, alpha=tv_alpha, gamma=1.5, reduction="none")
        torch.testing.assert_close(ours, theirs)


def test_reductions() -> None:
    torch.manual_seed(2)
    logits = torch.randn(7, 3)
    targets = (torch.rand(7, 3) > 0.5).float()
    none = sigmoid_focal_loss(logits, targets, reduction="none")
    assert none.shape == (7, 3)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum"), none.sum())
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="mean"), none.mean())
    with pytest.raises(ValueError, match="'none', 'mean', 'sum'"):
        sigmoid_focal_loss(logits, targets, reduction="avg")


def test_gradcheck() -> None:
    torch.manual_seed(3)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(4, 3) > 0.5).double()
    assert torch.autograd.gradcheck(lambda z: sigmoid_focal_loss(z, targets, reduction="sum"), (logits,))


def test_module_labels_weights_and_avg_factor() -> None:
    torch.manual_seed(4)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 3, 2, 3, 1])  # 3 = background
    weight = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5])
    targets = torch.zeros(5, 3)
    targets[[0, 2, 4], [0, 2, 1]] = 1  # background rows stay all-zero
    element = sigmoid_focal_loss(logits, targets, reduction="none")
    loss = FocalLoss(loss_weight=2.0)(logits, labels, weight, avg_factor=3.0)
    torch.testing.assert_close(loss, 2.0 * (element * weight[:, None]).sum() / 3.0)
    per_element = torch.rand(5, 3)
    none = FocalLoss()(logits, labels, per_element, reduction_override="none")
    torch.testing.assert_close(none, element * per_element)
    flat = FocalLoss()(logits, labels, per_element.flatten(), reduction_override="none")
    torch.testing.assert_close(flat, none)


def test_module_rejects_bad_inputs() -> None:
    logits = torch.zeros(4, 3)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="weight must have shape"):
        FocalLoss()(logits, labels, torch.ones(5))
    with pytest.raises(ValueError, match="avg_factor"):
        FocalLoss()(logits, labels, avg_factor=2.0, reduction_override="sum")
    with pytest.raises(ValueError, match="reduction must be one of"):
        FocalLoss(reduction="batchmean")
