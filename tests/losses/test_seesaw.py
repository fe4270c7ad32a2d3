"""Tests for cytolt.losses.seesaw (the numerical match with mmdet's SeesawLoss is in tests/mm/test_losses_mm.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.seesaw import SeesawLoss, seesaw_loss, seesaw_scores, split_seesaw_logits


def test_equal_counts_without_compensation_is_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    loss = seesaw_loss(logits, labels, torch.full((5,), 7.0), q=0.0, reduction="none")
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, reduction="none"))


def test_mitigation_hand_computed() -> None:
    # counts N = (100, 10), logits 0, q = 0. A sample of the frequent class 0 penalises the rare class 1 by
    # M_01 = (10 / 100)^0.8: loss = log(1 + 10^-0.8). A sample of class 1 penalises class 0 fully (N_0 > N_1):
    # M_10 = 1, loss = log 2.
    loss = seesaw_loss(
        torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([100.0, 10.0]), q=0.0, reduction="none"
    )
    torch.testing.assert_close(loss, torch.tensor([math.log(1 + 10**-0.8), math.log(2)]))


def test_compensation_hand_computed() -> None:
    # equal counts, logits (0, log 2), label 0: scores (1/3, 2/3); s_1 / s_0 = 2 > 1 -> C_01 = 2^2 = 4, so the
    # non-target logit becomes log 2 + log 4 = log 8 and the loss is log(1 + 8) = log 9.
    logits = torch.tensor([[0.0, math.log(2)]])
    loss = seesaw_loss(logits, torch.tensor([0]), torch.ones(2), reduction="none")
    torch.testing.assert_close(loss, torch.tensor([math.log(9)]))
    # s_0 ~ e^-20 is clamped to eps = 0.01: C_01 = (1 / 0.01)^2 = 1e4, loss ~ 20 + log(1e4).
    loss = seesaw_loss(torch.tensor([[-20.0, 0.0]]), torch.tensor([0]), torch.ones(2), reduction="none")
    torch.testing.assert_close(loss, torch.tensor([20 + math.log(1e4)]), rtol=1e-4, atol=1e-4)


def test_gradcheck_and_reductions() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2])
    counts = torch.tensor([50.0, 5.0, 20.0, 1.0], dtype=torch.float64)
    # the compensation factor is computed from detached scores (as in the paper), so gradcheck runs with q = 0
    assert torch.autograd.gradcheck(
        lambda z: seesaw_loss(z, labels, counts, q=0.0, reduction="sum"), (logits,)
    )
    none = seesaw_loss(logits, labels, counts, reduction="none")
    assert none.shape == (5,)
    torch.testing.assert_close(seesaw_loss(logits, labels, counts, reduction="mean"), none.mean())


def test_scores_of_one_stage_layout_equal_the_head_softmax() -> None:
    torch.manual_seed(2)
    logits = torch.randn(6, 4)  # 3 classes + background
    torch.testing.assert_close(seesaw_scores(logits, 3), F.softmax(logits, dim=1))
    classes, objectness = split_seesaw_logits(logits, 3)
    torch.testing.assert_close(objectness[:, 0], torch.logsumexp(logits[:, :3], dim=1))
    assert classes.shape == (6, 3)


def test_module_counts_before_computing_and_splits_terms() -> None:
    torch.manual_seed(3)
    logits = torch.randn(6, 5)  # C = 3 classes + 2 objectness
    labels = torch.tensor([0, 0, 3, 1, 0, 3])
    weight = torch.tensor([1.0, 0.5, 1.0, 1.0, 0.0, 2.0])
    loss_fn = SeesawLoss(3)
    parts = loss_fn.losses(logits, labels, weight)
    torch.testing.assert_close(loss_fn.cum_samples, torch.tensor([3.0, 1.0, 0.0, 2.0]))
    fg = labels < 3
    expected_cls = (
        seesaw_loss(logits[fg, :3], labels[fg], torch.tensor([3.0, 1.0, 0.0]), reduction="none") * weight[fg]
    ).sum() / fg.sum()
    torch.testing.assert_close(parts["loss_cls_classes"], expected_cls)
    obj = F.cross_entropy(logits[:, 3:], (labels == 3).long(), reduction="none")
    torch.testing.assert_close(parts["loss_cls_objectness"], (obj * weight).mean())
    loss_fn.reset()
    torch.testing.assert_close(
        loss_fn(logits, labels, weight), parts["loss_cls_classes"] + parts["loss_cls_objectness"]
    )


def test_module_avg_factor_none_and_no_foreground() -> None:
    torch.manual_seed(4)
    logits = torch.randn(4, 4, requires_grad=True)  # C = 3, one-stage layout
    labels = torch.tensor([3, 3, 3, 3])
    loss_fn = SeesawLoss(3)
    parts = loss_fn.losses(logits, labels, avg_factor=2.0)
    assert parts["loss_cls_classes"] == 0  # no foreground sample
    none = loss_fn.losses(logits, torch.tensor([0, 3, 2, 3]), reduction_override="none")
    assert none["loss_cls_classes"].shape == (4,) and none["loss_cls_classes"][1] == 0
    loss_fn(logits, labels).backward()
    assert torch.isfinite(logits.grad).all()


def test_module_state_eval_and_errors() -> None:
    torch.manual_seed(5)
    trained = SeesawLoss(3)
    for _ in range(3):
        trained(torch.randn(8, 5), torch.randint(0, 4, (8,)))
    restored = SeesawLoss(3)
    restored.load_state_dict(trained.state_dict())
    logits, labels = torch.randn(8, 5), torch.randint(0, 4, (8,))
    trained.eval()
    restored.eval()
    torch.testing.assert_close(restored(logits, labels), trained(logits, labels))
    before = trained.cum_samples.clone()
    trained(logits, labels)
    torch.testing.assert_close(trained.cum_samples, before)  # eval never counts
    with pytest.raises(ValueError, match=r"\(N, 5\) or \(N, 4\)"):
        trained(torch.randn(8, 3), labels)
