"""Tests for cytolt.classify.methods.marc: the calibrated logits, their gradients, the head and the loss."""

from __future__ import annotations

import pytest
import torch

from cytolt.classify.methods.marc import (
    MARC,
    MARCHead,
    WeightedCrossEntropy,
    build_marc_head,
    inverse_frequency_weights,
    marc_logits,
)
from cytolt.losses._common import cross_entropy_rows
from tests.classify.methods import tiny_context


def test_marc_logits_hand_worked() -> None:
    z = torch.tensor([[1.0, -2.0]])
    out = marc_logits(z, torch.tensor([2.0, 0.5]), torch.tensor([3.0, 1.0]), torch.tensor([0.5, -1.0]))
    # class 0: 3 * 1 + 0.5 * 2 = 4; class 1: 1 * -2 + -1 * 0.5 = -2.5
    torch.testing.assert_close(out, torch.tensor([[4.0, -2.5]]))
    with pytest.raises(ValueError, match="need 2 weight norms"):
        marc_logits(z, torch.ones(3), torch.ones(2), torch.ones(2))


def test_gradients_of_omega_and_beta() -> None:
    z = torch.randn(4, 3, dtype=torch.float64)
    norms = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    omega = torch.rand(3, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o, b: marc_logits(z, norms, o, b), (omega, beta))
    marc_logits(z, norms, omega, beta).sum().backward()
    torch.testing.assert_close(omega.grad, z.sum(0))  # d/d omega_c sum_i z'_ic = sum_i z_ic
    torch.testing.assert_close(beta.grad, 4 * norms)  # d/d beta_c = N ||w_c||


def test_head_starts_as_the_classifier_and_trains_only_omega_and_beta() -> None:
    ctx = tiny_context()
    head = MARC.build_head(ctx)
    assert isinstance(head.module, MARCHead) and head.config == {"type": "marc"}
    x = torch.randn(5, 4)
    torch.testing.assert_close(head.module(x), ctx.model.head(x))
    assert sorted(n for n, p in head.module.named_parameters() if p.requires_grad) == ["beta", "omega"]
    assert ctx.model.head.weight.requires_grad  # a copy was frozen
    with torch.no_grad():
        head.module.beta.fill_(1.0)
    torch.testing.assert_close(
        head.module(x) - ctx.model.head(x), ctx.model.head.weight.norm(dim=1).expand(5, 3)
    )
    rebuilt = build_marc_head(4, 3)
    rebuilt.load_state_dict(head.module.state_dict())
    torch.testing.assert_close(rebuilt(x), head.module(x))


def test_inverse_frequency_weights_have_mean_one_over_the_crops() -> None:
    w = inverse_frequency_weights([3, 1])
    # n^-1 = (1/3, 1); sum n w = 2 -> scaled by N / 2 = 2: (2/3, 2)
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2.0]))
    counts = torch.tensor([50.0, 7.0, 0.0, 1.0])
    w = inverse_frequency_weights(counts, power=0.5)
    assert float((w * counts).sum()) == pytest.approx(58.0) and float(w[2]) == 0.0
    with pytest.raises(ValueError, match="positive total"):
        inverse_frequency_weights([0, 0])


def test_loss_is_the_class_weighted_cross_entropy() -> None:
    ctx = tiny_context(labels=(0, 0, 0, 1))
    loss = MARC.build_loss(ctx)
    assert isinstance(loss, WeightedCrossEntropy)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 0, 0, 1])
    expected = (loss.class_weights[labels] * cross_entropy_rows(logits, labels)).mean()
    torch.testing.assert_close(loss(logits, labels), expected)
    # counts (3, 1, 0): weights (2/3, 2, 0): the one class-1 crop weighs as much as the three class-0 crops
    torch.testing.assert_close(loss.class_weights, torch.tensor([2 / 3, 2.0, 0.0]))
    assert (MARC.stage, MARC.sampler, MARC.trains, MARC.weight_decay) == (2, "instance", "head", 0.0)
