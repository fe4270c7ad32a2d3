"""Tests for cytolt.losses.pcb: the moving-average confusion matrix, fight-back soft labels, the loss on
hand-worked values, its limits (alpha 0 is cross-entropy; a prediction equal to the soft label costs nothing),
gradients, the enable / all-seen gates and state in the state dict."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.pcb import (
    PCBLoss,
    batch_confusion,
    fightback_labels,
    pcb_loss,
    update_confusion,
)

D = torch.float64


def test_batch_confusion_sums_foreground_softmax_by_true_class() -> None:
    # Two samples of class 0 (fg softmax [0.8, 0.2] and [0.6, 0.4]) and one background sample (label 2).
    logits = torch.tensor(
        [[math.log(0.8), math.log(0.2), 5.0], [math.log(0.6), math.log(0.4), -3.0], [0.0, 9.0, 1.0]]
    )
    sums, counts = batch_confusion(logits, torch.tensor([0, 0, 2]), 2)
    torch.testing.assert_close(sums, torch.tensor([[1.4, 0.6], [0.0, 0.0]]))
    torch.testing.assert_close(counts, torch.tensor([2.0, 0.0]))


def test_update_moves_present_rows_and_renormalises() -> None:
    zero = torch.zeros(2, 2, dtype=D)
    # First update of a row: 0.99 * 0 + 0.01 * [0.7, 0.3], renormalised -> the batch mean itself.
    m = update_confusion(zero, torch.tensor([[1.4, 0.6], [0, 0]], dtype=D), torch.tensor([2.0, 0.0], dtype=D))
    torch.testing.assert_close(m, torch.tensor([[0.7, 0.3], [0.0, 0.0]], dtype=D))
    # Second: 0.99 * [0.7, 0.3] + 0.01 * [0.5, 0.5] = [0.698, 0.302] (sums to 1 already); row 1 now [0.2, 0.8].
    m = update_confusion(
        m, torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=D), torch.tensor([1.0, 1.0], dtype=D)
    )
    torch.testing.assert_close(m, torch.tensor([[0.698, 0.302], [0.2, 0.8]], dtype=D))
    # momentum 0: the batch mean replaces the row.
    m0 = update_confusion(
        m, torch.tensor([[0.0, 3.0], [0, 0]], dtype=D), torch.tensor([3.0, 0.0], dtype=D), momentum=0.0
    )
    torch.testing.assert_close(m0, torch.tensor([[0.0, 1.0], [0.2, 0.8]], dtype=D))


def test_fightback_labels_are_normalised_columns() -> None:
    m = torch.tensor([[0.7, 0.3], [0.2, 0.8]], dtype=D)
    soft = fightback_labels(m, torch.tensor([0, 1, 2]))
    # column 0: [0.7, 0.2] / 0.9; column 1: [0.3, 0.8] / 1.1; background: zeros.
    torch.testing.assert_close(soft, torch.tensor([[7 / 9, 2 / 9], [3 / 11, 8 / 11], [0.0, 0.0]], dtype=D))
    # A column with no mass gives a zero soft label, not NaN.
    assert torch.equal(fightback_labels(torch.zeros(2, 2), torch.tensor([1])), torch.zeros(1, 2))


def test_loss_on_hand_worked_values() -> None:
    # Uniform logits over 3 columns: CE = log 3. Label 0's soft label q = [7/9, 2/9]:
    # KL([q, 0] || 1/3) = sum q log q + log 3. Row = 0.6 log 3 + 0.4 (log 3 + sum q log q); background: log 3.
    m = torch.tensor([[0.7, 0.3], [0.2, 0.8]], dtype=D)
    logits = torch.zeros(2, 3, dtype=D)
    q = torch.tensor([7 / 9, 2 / 9], dtype=D)
    fg = 0.6 * math.log(3) + 0.4 * (math.log(3) + float((q * q.log()).sum()))
    rows = pcb_loss(logits, torch.tensor([0, 2]), m, alpha=0.4, reduction="none")
    torch.testing.assert_close(rows, torch.tensor([fg, math.log(3)], dtype=D))
    torch.testing.assert_close(pcb_loss(logits, torch.tensor([0, 2]), m, alpha=0.4), rows.mean())
    torch.testing.assert_close(
        pcb_loss(logits, torch.tensor([0, 2]), m, alpha=0.4, reduction="sum"), rows.sum()
    )


def test_limits() -> None:
    torch.manual_seed(0)
    m = torch.softmax(torch.randn(4, 4, dtype=D), dim=1)
    logits = torch.randn(6, 5, dtype=D)
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    # alpha 0: softmax cross-entropy.
    torch.testing.assert_close(
        pcb_loss(logits, labels, m, alpha=0.0, reduction="none"),
        F.cross_entropy(logits, labels, reduction="none"),
    )
    # alpha 1 and a prediction equal to the soft label (background logit -> -inf): foreground rows cost ~0.
    soft = fightback_labels(m, labels[:4])
    at_target = torch.cat([soft.log(), torch.full((4, 1), -60.0, dtype=D)], dim=1)
    assert pcb_loss(at_target, labels[:4], m, alpha=1.0, reduction="none").abs().max() < 1e-12


def test_gradient_is_softmax_minus_mixed_target() -> None:
    # d/dz [(1 - a) CE + a KL] = p - ((1 - a) onehot + a [q, 0]) for a foreground row; p - onehot(C) for background.
    torch.manual_seed(1)
    m = torch.softmax(torch.randn(3, 3, dtype=D), dim=1)
    logits = torch.randn(4, 4, dtype=D, requires_grad=True)
    labels = torch.tensor([0, 2, 3, 1])
    pcb_loss(logits, labels, m, alpha=0.4, reduction="sum").backward()
    soft = torch.cat([fightback_labels(m, labels), torch.zeros(4, 1, dtype=D)], dim=1)
    onehot = F.one_hot(labels, 4).to(D)
    fg = (labels < 3).to(D).reshape(-1, 1)
    target = onehot * (1 - 0.4 * fg) + 0.4 * fg * soft
    torch.testing.assert_close(logits.grad, torch.softmax(logits.detach(), 1) - target)


def test_fight_back_lightens_the_push_on_a_swallowed_tail_class() -> None:
    # Tail class 1's samples are predicted as head class 0 60% of the time. A head sample's soft label then gives
    # class 1 mass 0.6 / 1.5 = 0.4, so the gradient pushing the tail logit down on head samples shrinks by
    # alpha * 0.4 compared with cross-entropy.
    m = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=D)
    logits = torch.zeros(1, 3, dtype=D, requires_grad=True)
    pcb_loss(logits, torch.tensor([0]), m, alpha=0.4, reduction="sum").backward()
    assert logits.grad[0, 1].item() == pytest.approx(1 / 3 - 0.4 * 0.4)
    ce = torch.zeros(1, 3, dtype=D, requires_grad=True)
    F.cross_entropy(ce, torch.tensor([0]), reduction="sum").backward()
    assert ce.grad[0, 1].item() == pytest.approx(1 / 3)


def test_module_gates_updates_and_state() -> None:
    torch.manual_seed(2)
    loss_fn = PCBLoss(3, alpha=0.4).train()
    logits = torch.randn(5, 4)
    only_0_1 = torch.tensor([0, 1, 3, 0, 3])
    # Disabled: plain cross-entropy, but the confusion matrix already learns.
    torch.testing.assert_close(loss_fn(logits, only_0_1), F.cross_entropy(logits, only_0_1))
    assert torch.equal(loss_fn.instance_count, torch.tensor([2.0, 1.0, 0.0]))
    torch.testing.assert_close(loss_fn.confusion.sum(1), torch.tensor([1.0, 1.0, 0.0]))
    # Enabled, but class 2 never seen: still cross-entropy (require_all_seen).
    loss_fn.set_enabled(True)
    torch.testing.assert_close(loss_fn(logits, only_0_1), F.cross_entropy(logits, only_0_1))
    # Once every class is seen the regulariser acts, with the confusion matrix after this batch's update.
    labels = torch.tensor([0, 1, 2, 3, 2])
    out = loss_fn(logits, labels)
    torch.testing.assert_close(out, pcb_loss(logits, labels, loss_fn.confusion, alpha=0.4))
    assert not torch.allclose(out, F.cross_entropy(logits, labels))
    # eval: no update; state is in the state dict and survives a round trip.
    before = loss_fn.confusion.clone()
    loss_fn.eval()(logits, labels)
    assert torch.equal(loss_fn.confusion, before)
    state = loss_fn.state_dict()
    assert set(state) == {"confusion", "instance_count", "enabled"}
    fresh = PCBLoss(3)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.eval()(logits, labels), loss_fn(logits, labels))
    loss_fn.reset()
    assert loss_fn.enabled.item() == 0 and loss_fn.instance_count.sum().item() == 0


def test_weights_avg_factor_and_errors() -> None:
    torch.manual_seed(3)
    loss_fn = PCBLoss(2).eval()
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    w = torch.tensor([1.0, 0.0, 1.0, 1.0])
    expected = (F.cross_entropy(logits, labels, reduction="none") * w).sum() / 3
    torch.testing.assert_close(loss_fn(logits, labels, w, avg_factor=3.0), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        loss_fn(torch.randn(4, 2), labels)
    for bad in (dict(alpha=1.5), dict(momentum=1.0)):
        with pytest.raises(ValueError):
            PCBLoss(2, **bad)


def test_training_forward_never_reads_values_on_the_host() -> None:
    loss_fn = PCBLoss(4).to("meta").train()
    loss_fn.set_enabled(True)
    logits = torch.empty(6, 5, device="meta", requires_grad=True)
    out = loss_fn(logits, torch.empty(6, dtype=torch.long, device="meta"), torch.empty(6, device="meta"))
    out.backward()
