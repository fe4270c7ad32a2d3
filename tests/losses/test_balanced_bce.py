"""Tests for cytolt.losses.balanced_bce: the prior shift, its limit, gradients and the module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.balanced_bce import BalancedBCELoss, balanced_bce_loss


def test_hand_computed_case() -> None:
    # pi = 0.2 -> shift log(0.2 / 0.8) = log(1/4); z = 0, y = 1: BCE(log 1/4, 1) = log(1 + 4) = log 5;
    # y = 0: BCE(log 1/4, 0) = log(1 + 1/4).
    loss = balanced_bce_loss(
        torch.zeros(2, 1), torch.tensor([[1.0], [0.0]]), torch.tensor([0.2]), reduction="none"
    )
    torch.testing.assert_close(loss, torch.tensor([[math.log(5)], [math.log(1.25)]]))


def test_prior_one_half_is_bce_and_gradcheck() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(5, 3) > 0.6).double()
    half = torch.full((3,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(
        balanced_bce_loss(logits, targets, half), F.binary_cross_entropy_with_logits(logits, targets)
    )
    prior = torch.tensor([0.01, 0.2, 0.6], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: balanced_bce_loss(z, targets, prior, reduction="sum"), (logits,)
    )


def test_rare_category_positive_costs_more() -> None:
    # Same logit, same positive target: the rarer prior shifts the logit down, so missing it costs more.
    loss = balanced_bce_loss(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([0.01, 0.3]), reduction="none")
    assert loss[0, 0] > loss[0, 1]


def test_module() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 2)
    labels = torch.tensor([0, 2, 1, 2])
    loss_fn = BalancedBCELoss([0.1, 0.3])
    targets = F.one_hot(labels, 3)[:, :2].float()
    expected = balanced_bce_loss(logits, targets, torch.tensor([0.1, 0.3]), reduction="sum") / 2.0
    torch.testing.assert_close(loss_fn(logits, labels, avg_factor=2.0), expected)
    restored = BalancedBCELoss([0.5, 0.5])
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored(logits, labels), loss_fn(logits, labels))
    with pytest.raises(ValueError, match=r"values in \(0, 1\)"):
        BalancedBCELoss([0.0, 0.5])
