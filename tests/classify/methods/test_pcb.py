"""Tests for cytolt.classify.methods.pcb: PCB's loss over K classes without background, its switch by epoch."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.classify.methods.pcb import PCB, PCBClassificationLoss, pcb_classification_loss, start_epoch
from cytolt.losses._common import cross_entropy_rows
from tests.classify.methods import tiny_context


def test_limits_alpha_zero_and_an_identity_confusion_give_cross_entropy() -> None:
    torch.manual_seed(0)
    z, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    ce = cross_entropy_rows(z, y).mean()
    confusion = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.0, 0.5, 0.5]])
    torch.testing.assert_close(pcb_classification_loss(z, y, confusion, alpha=0.0), ce)
    # identity confusion: every soft label is the one-hot label, KL(onehot || p) = CE
    torch.testing.assert_close(pcb_classification_loss(z, y, torch.eye(3), alpha=0.4), ce)


def test_hand_worked_soft_label() -> None:
    # K = 2, confusion rows (true class): [[0.75, 0.25], [0.5, 0.5]]; column 0 normalised: q(0) = (0.6, 0.4).
    confusion = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    z = torch.zeros(1, 2)  # p = (1/2, 1/2)
    ce = math.log(2.0)
    kl = 0.6 * math.log(0.6 / 0.5) + 0.4 * math.log(0.4 / 0.5)
    value = pcb_classification_loss(z, torch.tensor([0]), confusion, alpha=0.4)
    assert math.isclose(float(value), 0.6 * ce + 0.4 * kl, rel_tol=1e-6)


def test_gradient_matches_finite_differences() -> None:
    confusion = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.4, 0.5]], dtype=torch.float64)
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    assert torch.autograd.gradcheck(lambda t: pcb_classification_loss(t, y, confusion, alpha=0.4), (z,))


def test_module_updates_its_confusion_in_training_only() -> None:
    loss = PCBClassificationLoss(3)
    z, y = torch.randn(4, 3), torch.tensor([0, 0, 1, 2])
    loss.eval()
    loss(z, y)
    assert float(loss.confusion.abs().sum()) == 0.0
    loss.train()
    loss(z, y)
    # the first update of a row is its batch mean softmax
    torch.testing.assert_close(loss.confusion[1], torch.softmax(z[2], 0))
    with pytest.raises(ValueError, match="must have shape"):
        loss(torch.randn(4, 4), y)


def test_switch_starts_at_two_thirds_of_the_schedule() -> None:
    assert start_epoch(24) == 16 and start_epoch(10) == 6 and start_epoch(1) == 0
    ctx = tiny_context(epochs=6)  # start epoch 4
    ctx.loss = PCB.build_loss(ctx)
    assert float(ctx.loss.enabled) == 0.0
    rows = [PCB.epoch_end(ctx, e)["pcb_enabled_next"] for e in range(6)]
    assert rows == [False, False, False, True, True, True] and float(ctx.loss.enabled) == 1.0
    assert float(PCB.build_loss(tiny_context(epochs=1)).enabled) == 1.0
    ctx = tiny_context(options={"pcb_start": 1, "pcb_alpha": 0.2})
    ctx.loss = PCB.build_loss(ctx)
    assert ctx.loss.alpha == 0.2 and PCB.epoch_end(ctx, 0)["pcb_enabled_next"] is True
