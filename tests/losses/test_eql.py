"""Tests for cytolt.losses.eql: which terms are dropped, the limits, gradients, the buffer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.eql import EQLLoss, eql_weights, equalization_loss

# category 0 frequent, 1 and 2 rare under lambda = 0.0011
FREQ = torch.tensor([0.5, 0.0005, 0.001])


def test_weights_drop_rare_negatives_of_foreground_rows_only() -> None:
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # fg 0, fg 2, background
    # Row 0: rare negatives 1, 2 dropped. Row 1: rare negative 1 dropped, its own positive kept, frequent
    # negative 0 kept. Row 2 (background, E = 0): nothing dropped.
    expected = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(eql_weights(targets, FREQ, lambda_=0.0011), expected)


def test_loss_is_masked_bce_and_lambda_zero_is_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 3)
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = equalization_loss(logits, targets, FREQ, reduction="none")
    torch.testing.assert_close(loss, bce * eql_weights(targets, FREQ))
    torch.testing.assert_close(equalization_loss(logits, targets, FREQ, lambda_=0.0), bce.mean())


def test_dropped_terms_get_no_gradient() -> None:
    logits = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    equalization_loss(logits, targets, FREQ.double(), reduction="sum").backward()
    assert logits.grad[0, 1] == 0 and logits.grad[0, 2] == 0
    assert (logits.grad[1] != 0).all()


def test_gradcheck() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: equalization_loss(z, targets, FREQ.double(), reduction="mean"), (logits,)
    )


def test_module_and_state_dict() -> None:
    torch.manual_seed(2)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 3, 2, 1, 3, 0])
    loss_fn = EQLLoss(FREQ.tolist(), loss_weight=0.5)
    targets = F.one_hot(labels, 4)[:, :3].float()
    expected = 0.5 * equalization_loss(logits, targets, FREQ, reduction="sum") / 3.0
    torch.testing.assert_close(loss_fn(logits, labels, avg_factor=3.0), expected)
    restored = EQLLoss([1.0, 1.0, 1.0])
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored.image_freq, FREQ)
    assert loss_fn(logits, labels, reduction_override="none").shape == (6, 3)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 3\)"):
        loss_fn(torch.zeros(6, 4), labels)
    with pytest.raises(ValueError, match="image_freq is empty"):
        EQLLoss([])
