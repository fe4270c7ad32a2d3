"""Tests for cytolt.losses.logit_adjusted: the prior shift, its limits, gradients and the background column."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.logit_adjusted import LogitAdjustedLoss, adjust_logits, logit_adjusted_cross_entropy


def test_hand_computed_case() -> None:
    # logits 0, prior (0.75, 0.25): adjusted logits (log .75, log .25), softmax = (.75, .25);
    # label 1 -> -log 0.25 = log 4, label 0 -> log(4/3).
    loss = logit_adjusted_cross_entropy(
        torch.zeros(2, 2), torch.tensor([1, 0]), torch.tensor([0.75, 0.25]), reduction="none"
    )
    torch.testing.assert_close(loss, torch.tensor([math.log(4), math.log(4 / 3)]))


def test_limits_are_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    labels = torch.randint(0, 4, (6,))
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(
        logit_adjusted_cross_entropy(logits, labels, torch.full((4,), 0.25)), ce
    )  # uniform
    prior = torch.tensor([0.7, 0.2, 0.05, 0.05])
    torch.testing.assert_close(logit_adjusted_cross_entropy(logits, labels, prior, tau=0.0), ce)


def test_background_column_is_not_shifted() -> None:
    logits = torch.zeros(1, 3)
    adjusted = adjust_logits(logits, torch.tensor([0.5, 0.25]), tau=2.0)
    torch.testing.assert_close(adjusted, torch.tensor([[2 * math.log(0.5), 2 * math.log(0.25), 0.0]]))


def test_gradcheck() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 1, 0])
    prior = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: logit_adjusted_cross_entropy(z, labels, prior, tau=1.5, reduction="sum"), (logits,)
    )


def test_module() -> None:
    torch.manual_seed(2)
    logits = torch.randn(5, 3)  # 2 classes + background
    labels = torch.tensor([0, 2, 1, 2, 2])
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    loss_fn = LogitAdjustedLoss([0.8, 0.2])
    per_sample = logit_adjusted_cross_entropy(logits, labels, torch.tensor([0.8, 0.2]), reduction="none")
    torch.testing.assert_close(
        loss_fn(logits, labels, weight, avg_factor=2.0), (per_sample * weight).sum() / 2.0
    )
    assert loss_fn(logits, labels, reduction_override="none").shape == (5,)
    restored = LogitAdjustedLoss([0.5, 0.5])
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored(logits, labels), loss_fn(logits, labels))
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(N, 2\)"):
        loss_fn(torch.zeros(5, 4), labels)
    with pytest.raises(ValueError, match="softmax loss must have shape"):
        loss_fn(logits, labels, torch.ones(5, 3))
