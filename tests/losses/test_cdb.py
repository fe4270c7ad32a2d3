"""Tests for cytolt.losses.cdb: class-difficulty weights (fixed and dynamic tau) and the CDB-W loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.cdb import CDBLoss, cdb_cross_entropy, cdb_sigmoid_loss, cdb_weights, dynamic_tau
from cytolt.losses.focal import sigmoid_focal_loss


def test_fixed_tau_hand_computed() -> None:
    # d = (0.5, 0.25, 0.25), tau = 1: w = d / sum(d) * 3 = (1.5, 0.75, 0.75); tau = 2: d^2 = (.25, .0625, .0625),
    # sum .375 -> (2, 0.5, 0.5).
    torch.testing.assert_close(cdb_weights([0.5, 0.25, 0.25], 1.0), torch.tensor([1.5, 0.75, 0.75]))
    torch.testing.assert_close(cdb_weights(torch.tensor([0.5, 0.25, 0.25]), 2), torch.tensor([2.0, 0.5, 0.5]))


def test_dynamic_tau_hand_computed() -> None:
    # A = 1 - d = (0.5, 0.75, 0.75): b = 0.75 / (0.5 + 0.01) - 1 = 0.470588..., tau = 2 sigmoid(b) = 1.23105...
    b = 0.75 / 0.51 - 1
    tau = 2 / (1 + math.exp(-b))
    torch.testing.assert_close(dynamic_tau(torch.tensor([0.5, 0.75, 0.75])), torch.tensor(tau))
    raw = torch.tensor([0.5**tau, 0.25**tau, 0.25**tau])
    weights = cdb_weights([0.5, 0.25, 0.25], "dynamic")
    torch.testing.assert_close(weights, raw / raw.sum() * 3)
    assert math.isclose(float(weights.mean()), 1.0, rel_tol=1e-6)


def test_weights_limits_and_errors() -> None:
    torch.testing.assert_close(cdb_weights([0.0, 0.0]), torch.ones(2))  # nothing difficult: uniform
    torch.testing.assert_close(cdb_weights([0.3, 0.3, 0.3], 1.5), torch.ones(3))  # equal difficulty: uniform
    # A = (0.8, 0.4): tau = 2 sigmoid(0.8 / 0.41 - 1) = 1.44 > 1, so the weight ratio 3^1.44 exceeds the
    # difficulty ratio 3.
    skewed = cdb_weights([0.2, 0.6], "dynamic")
    assert skewed[1] > 3 * skewed[0]
    with pytest.raises(ValueError, match="number or 'dynamic'"):
        cdb_weights([0.1], "auto")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        cdb_weights([0.1, 1.5], 1.0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        cdb_weights([], 1.0)


def test_softmax_loss_is_weighted_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4)  # 3 classes + background
    labels = torch.tensor([0, 3, 1, 2, 3, 0])
    loss_fn = CDBLoss(3)
    torch.testing.assert_close(loss_fn(logits, labels), F.cross_entropy(logits, labels))  # starts uniform
    weights = loss_fn.set_difficulty([0.5, 0.25, 0.25])
    torch.testing.assert_close(weights, cdb_weights([0.5, 0.25, 0.25], "dynamic"))  # the default tau
    per_class = torch.cat([loss_fn.class_weights, torch.ones(1)])  # background weight 1
    expected = (per_class[labels] * F.cross_entropy(logits, labels, reduction="none")).mean()
    torch.testing.assert_close(loss_fn(logits, labels), expected)
    torch.testing.assert_close(cdb_cross_entropy(logits, labels, loss_fn.class_weights), expected)


def test_sigmoid_loss_weights_columns() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 3, 2, 1, 3])
    targets = F.one_hot(labels, 4)[:, :3].float()
    loss_fn = CDBLoss(3, use_sigmoid=True, alpha=0.25, gamma=2.0)
    loss_fn.set_weights([2.0, 0.5, 0.5])
    expected = sigmoid_focal_loss(logits, targets, reduction="none") * torch.tensor([2.0, 0.5, 0.5])
    torch.testing.assert_close(loss_fn(logits, labels, reduction_override="none"), expected)
    torch.testing.assert_close(loss_fn(logits, labels, avg_factor=2.0), expected.sum() / 2.0)
    plain = cdb_sigmoid_loss(logits, targets, torch.ones(3))
    torch.testing.assert_close(plain, F.binary_cross_entropy_with_logits(logits, targets))


def test_gradcheck() -> None:
    torch.manual_seed(2)
    w = torch.tensor([2.0, 0.5, 0.5], dtype=torch.float64)
    logits = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 2, 1])
    assert torch.autograd.gradcheck(lambda z: cdb_cross_entropy(z, labels, w, reduction="sum"), (logits,))
    targets = F.one_hot(labels, 4)[:, :3].double()
    assert torch.autograd.gradcheck(
        lambda z: cdb_sigmoid_loss(z[:, :3], targets, w, gamma=2.0, reduction="sum"), (logits,)
    )


def test_state_dict_and_errors() -> None:
    loss_fn = CDBLoss(3)
    loss_fn.set_difficulty([0.9, 0.1, 0.5])
    restored = CDBLoss(3)
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored.class_weights, loss_fn.class_weights)
    loss_fn.reset()
    torch.testing.assert_close(loss_fn.class_weights, torch.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        loss_fn.set_weights([1.0, 1.0])
    with pytest.raises(ValueError, match="only with use_sigmoid=True"):
        CDBLoss(3, gamma=2.0)
    with pytest.raises(ValueError, match="use_sigmoid=True"):
        CDBLoss(3, use_sigmoid=True)(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
