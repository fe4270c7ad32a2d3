"""Tests for cytolt.losses.distribution_balanced: weights, bias, the element loss by hand and against the authors'
steps, the BCE / focal limits, gradients, the module and its errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses import get_loss
from cytolt.losses.distribution_balanced import (
    DistributionBalancedLoss,
    distribution_balanced_loss,
    negative_tolerant_bias,
    rebalance_weights,
)
from cytolt.losses.focal import sigmoid_focal_loss


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_rebalance_weights_by_hand() -> None:
    # n = (1, 4). Row [1, 1]: sum 1/n = 1.25, r = (1 / 1.25, 0.25 / 1.25) = (0.8, 0.2).
    # Row [0, 1]: sum = 0.25, r = (4, 1). Empty row: r = 1 for every column (documented choice).
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    w = rebalance_weights(targets, torch.tensor([1.0, 4.0]), alpha=0.1, beta=10.0, mu=0.2)
    expected = torch.tensor(
        [
            [0.1 + sig(6.0), 0.1 + sig(0.0)],
            [0.1 + sig(38.0), 0.1 + sig(8.0)],
            [0.1 + sig(8.0), 0.1 + sig(8.0)],
        ]
    )
    torch.testing.assert_close(w, expected)


def test_single_label_rows_have_ratio_one_for_their_class() -> None:
    # One positive: P^C_i = P^I for that class, whatever its frequency.
    freq = torch.tensor([3.0, 50.0, 700.0])
    w = rebalance_weights(torch.eye(3), freq, alpha=0.0, beta=1.0, mu=0.0)
    torch.testing.assert_close(torch.diagonal(w), torch.full((3,), sig(1.0)))


def test_bias_by_hand_and_clamped_prior() -> None:
    # n = (1, 4), N = 5: p = (0.2, 0.8), log-odds (-log 4, log 4); nu = 0.05 * b / 2.
    nu = negative_tolerant_bias(torch.tensor([1.0, 4.0]), 5, kappa=0.05, neg_scale=2.0)
    torch.testing.assert_close(nu, torch.tensor([-0.025 * math.log(4), 0.025 * math.log(4)]))
    # A class in all N = 9 samples: p clamped to 9 / 10, log-odds log 9, finite.
    nu = negative_tolerant_bias(torch.tensor([9.0]), 9, kappa=1.0, neg_scale=1.0)
    torch.testing.assert_close(nu, torch.tensor([math.log(9.0)]))


def test_element_loss_by_hand() -> None:
    # n = (1, 4), N = 5, z = 0, y = [1, 0]: r = (1, 0.25) -> r_hat = (0.1 + sig(8), 0.1 + sig(0.5)).
    # Positive: shifted logit nu_0 = -0.025 log 4, loss r_hat_0 softplus(-nu_0) sig(-nu_0)^2.
    # Negative: nu_1 = +0.025 log 4, lambda nu_1 = 0.05 log 4, loss r_hat_1 / 2 softplus(0.05 log 4) sig(.)^2.
    a = 0.025 * math.log(4)
    pos = (0.1 + sig(8.0)) * math.log1p(math.exp(a)) * sig(a) ** 2
    neg = (0.1 + sig(0.5)) / 2 * math.log1p(math.exp(2 * a)) * sig(2 * a) ** 2
    loss = distribution_balanced_loss(
        torch.zeros(1, 2),
        torch.tensor([[1.0, 0.0]]),
        class_freq=torch.tensor([1.0, 4.0]),
        num_samples=5,
        reduction="none",
    )
    torch.testing.assert_close(loss, torch.tensor([[pos, neg]]))


def _authors_steps(logits, targets, freq, n, *, alpha, beta, mu, lam, kappa, gamma):
    """The published algorithm step by step (shift, scale negatives, weighted BCE, focal factor from p_t)."""
    inv = 1.0 / freq
    weight = alpha + torch.sigmoid(beta * (inv[None, :] / (targets * inv).sum(1, keepdim=True) - mu))
    z = logits - torch.log(n / freq - 1) * kappa / lam
    z = z * (1 - targets) * lam + z * targets
    weight = weight / lam * (1 - targets) + weight * targets
    bce = F.binary_cross_entropy_with_logits(z, targets, reduction="none")
    pt = torch.exp(-bce)
    return (1 - pt) ** gamma * F.binary_cross_entropy_with_logits(z, targets, weight=weight, reduction="none")


def test_matches_the_authors_steps_on_random_multilabel_rows() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(16, 5, generator=g) < 0.4).double()
    targets[:, 0] = 1.0  # every row holds a class (the authors' ratio is undefined otherwise)
    freq = torch.tensor([60.0, 30.0, 9.0, 4.0, 1.0], dtype=torch.float64)
    params = dict(alpha=0.1, beta=10.0, mu=0.2, kappa=0.05, gamma=2.0)
    ours = distribution_balanced_loss(
        logits, targets, class_freq=freq, num_samples=80, neg_scale=2.0, reduction="none", **params
    )
    theirs = _authors_steps(logits, targets, freq, torch.tensor(80.0, dtype=torch.float64), lam=2.0, **params)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_unit_weights_no_bias_lambda_one_give_bce_or_focal(gamma: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 4, generator=g)
    targets = (torch.rand(7, 4, generator=g) < 0.3).float()
    loss = distribution_balanced_loss(
        logits,
        targets,
        class_freq=torch.tensor([50.0, 20.0, 5.0, 1.0]),
        num_samples=60,
        alpha=0.5,
        beta=0.0,
        neg_scale=1.0,
        kappa=0.0,
        gamma=gamma,
    )
    reference = (
        F.binary_cross_entropy_with_logits(logits, targets)
        if gamma == 0
        else sigmoid_focal_loss(logits, targets, alpha=None, gamma=gamma)
    )
    torch.testing.assert_close(loss, reference)


def test_negative_tolerance_penalises_a_confident_negative_less_than_bce() -> None:
    # z = -2 on a negative: BCE log(1 + e^-2) = 0.127; lambda = 2: log(1 + e^-4) / 2 = 0.009, and its gradient
    # sigmoid(lambda z) = 0.018 against sigmoid(z) = 0.119: the negative is let go once below threshold.
    freq, common = torch.tensor([10.0]), dict(num_samples=20, alpha=0.5, beta=0.0, kappa=0.0, gamma=0.0)
    z = torch.full((1, 1), -2.0, requires_grad=True)
    tolerant = distribution_balanced_loss(z, torch.zeros(1, 1), class_freq=freq, neg_scale=2.0, **common)
    (grad,) = torch.autograd.grad(tolerant, z)
    torch.testing.assert_close(tolerant, torch.tensor(math.log1p(math.exp(-4.0)) / 2))
    torch.testing.assert_close(grad, torch.tensor([[sig(-4.0)]]))
    assert tolerant < F.binary_cross_entropy_with_logits(z, torch.zeros(1, 1))


def test_rare_class_bias_lowers_its_initial_negative_loss() -> None:
    loss = distribution_balanced_loss(
        torch.zeros(1, 2),
        torch.zeros(1, 2),
        class_freq=torch.tensor([2.0, 90.0]),
        num_samples=100,
        alpha=0.5,
        beta=0.0,
        reduction="none",
    )
    assert loss[0, 0] < loss[0, 1]


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(6, 3, generator=g) < 0.5).double()
    targets[0] = 0.0  # an empty row
    freq = torch.tensor([40.0, 7.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: distribution_balanced_loss(z, targets, class_freq=freq, num_samples=50, reduction="sum"),
        (logits,),
    )


def test_module_labels_or_targets_weights_and_state() -> None:
    torch.manual_seed(3)
    loss_fn = DistributionBalancedLoss([30, 8, 2], 40)
    assert get_loss("DistributionBalancedLoss") is DistributionBalancedLoss
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 3, 1, 3])  # 3 = background
    targets = F.one_hot(labels, 4)[:, :3].float()
    expected = distribution_balanced_loss(
        logits, targets, class_freq=torch.tensor([30.0, 8.0, 2.0]), num_samples=40, reduction="none"
    )
    torch.testing.assert_close(loss_fn(logits, labels, reduction_override="none"), expected)
    torch.testing.assert_close(loss_fn(logits, targets), expected.mean())
    weight = torch.rand(5)
    torch.testing.assert_close(
        loss_fn(logits, targets, weight, avg_factor=2.0), (expected * weight[:, None]).sum() / 2.0
    )
    assert set(loss_fn.state_dict()) == {"class_freq", "bias"}
    restored = DistributionBalancedLoss([1, 1, 1], 40)
    restored.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(restored(logits, targets), loss_fn(logits, targets))


def test_bad_input_errors() -> None:
    freq = torch.tensor([3.0, 1.0])
    with pytest.raises(ValueError, match="targets must have the logits' shape"):
        distribution_balanced_loss(torch.zeros(2, 2), torch.zeros(2, 3), class_freq=freq, num_samples=4)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 2\)"):
        distribution_balanced_loss(torch.zeros(2, 3), torch.zeros(2, 3), class_freq=freq, num_samples=4)
    with pytest.raises(ValueError, match="neg_scale"):
        distribution_balanced_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), class_freq=freq, num_samples=4, neg_scale=0
        )
    with pytest.raises(ValueError, match="gamma"):
        DistributionBalancedLoss([3, 1], 4, gamma=-1.0)
    with pytest.raises(ValueError, match=">= 1 training sample"):
        DistributionBalancedLoss([3, 0], 4)
    with pytest.raises(ValueError, match="num_samples"):
        DistributionBalancedLoss([3, 1], 2)
    with pytest.raises(ValueError, match=r"labels must be \(N,\) class indices or \(N, C\)"):
        DistributionBalancedLoss([3, 1], 4)(torch.zeros(2, 2), torch.zeros(2, 3))
