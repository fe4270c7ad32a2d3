"""Tests for cytolt.losses.eqlv2: the mapping function, its limits, gradients and the accumulated state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.eqlv2 import EQLv2Loss, eqlv2_loss, eqlv2_weights


def _batch(seed: int, n: int = 10, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c + 1, (n,), generator=g)


def test_weights_at_ratio_point_eight() -> None:
    # r = 0.8 = mu -> neg_w = sigmoid(0) = 0.5, pos_w = 1 + 4 * (1 - 0.5) = 3.
    pos_w, neg_w = eqlv2_weights(torch.tensor([0.8]), torch.tensor([1.0]))
    torch.testing.assert_close(pos_w, torch.tensor([3.0]))
    torch.testing.assert_close(neg_w, torch.tensor([0.5]))


def test_weight_limits() -> None:
    # r = 0: neg_w = sigmoid(-9.6), pos_w -> 1 + 4 (1 - neg_w), about 5; r large: both -> 1; no negatives yet: 1, 1.
    pos_w, neg_w = eqlv2_weights(torch.tensor([0.0, 100.0, 0.0]), torch.tensor([1.0, 1.0, 0.0]))
    s = 1 / (1 + math.exp(9.6))
    torch.testing.assert_close(neg_w, torch.tensor([s, 1.0, 1.0]))
    torch.testing.assert_close(pos_w, torch.tensor([1 + 4 * (1 - s), 1.0, 1.0]))
    clamped, _ = eqlv2_weights(torch.tensor([5.0]), torch.tensor([1.0]), clamp=True)  # r clamped to 1
    torch.testing.assert_close(clamped, 1 + 4 * (1 - torch.sigmoid(torch.tensor([12 * 0.2]))))


def test_fresh_module_is_bce() -> None:
    logits, labels = _batch(0)
    targets = F.one_hot(labels, 4)[:, :3].float()
    torch.testing.assert_close(
        EQLv2Loss(3)(logits, labels), F.binary_cross_entropy_with_logits(logits, targets)
    )


def test_hand_computed_case() -> None:
    # State r = 0.8 for both categories -> pos_w 3, neg_w 0.5; z = 0 -> BCE = log 2 everywhere.
    loss = eqlv2_loss(
        torch.zeros(1, 2),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([0.8, 0.8]),
        torch.ones(2),
        reduction="none",
    )
    torch.testing.assert_close(loss, torch.tensor([[3 * math.log(2), 0.5 * math.log(2)]]))


def test_gradcheck() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(4, 3) > 0.5).double()
    pos, neg = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: eqlv2_loss(z, targets, pos, neg, reduction="sum"), (logits,))


def test_state_accumulates_weighted_bce_gradient() -> None:
    # The paper accumulates |dBCE/dz| = |p - y| times the EQLv2 weight (and the label weight): the gradient of
    # the summed weighted loss, without the reduction divisor.
    logits, labels = _batch(2)
    weight = torch.rand(10)
    loss_fn = EQLv2Loss(3)
    loss_fn.pos_grad.copy_(torch.tensor([0.5, 1.0, 2.0]))
    loss_fn.neg_grad.fill_(1.0)
    before = (loss_fn.pos_grad.clone(), loss_fn.neg_grad.clone())
    z = logits.clone().requires_grad_()
    loss_fn(z, labels, weight, reduction_override="sum").backward()
    targets = F.one_hot(labels, 4)[:, :3].float()
    torch.testing.assert_close(loss_fn.pos_grad - before[0], (z.grad.abs() * targets).sum(0))
    torch.testing.assert_close(loss_fn.neg_grad - before[1], (z.grad.abs() * (1 - targets)).sum(0))


def test_category_without_positives_loses_its_negatives() -> None:
    loss_fn = EQLv2Loss(2)
    labels = torch.tensor([0, 0, 2, 2, 2])
    for seed in range(2):
        loss_fn(_batch(seed, 5, 2)[0], labels)
    pos_w, neg_w = loss_fn.weights()
    assert neg_w[1] < 1e-3 < neg_w[0]  # r_1 = 0: negatives of the unseen category almost ignored
    assert pos_w[1] > pos_w[0]


def test_state_dict_round_trip_and_reset() -> None:
    trained = EQLv2Loss(3)
    for seed in range(3):
        trained(*_batch(seed))
    restored = EQLv2Loss(3)
    restored.load_state_dict(trained.state_dict())
    logits, labels = _batch(7)
    torch.testing.assert_close(restored(logits, labels), trained(logits, labels))
    trained.reset()
    assert trained.pos_grad.abs().sum() == 0 and trained.neg_grad.abs().sum() == 0


def test_reductions_and_eval_mode() -> None:
    logits, labels = _batch(3)
    loss_fn = EQLv2Loss(3).eval()
    none = loss_fn(logits, labels, reduction_override="none")
    assert none.shape == (10, 3)
    torch.testing.assert_close(loss_fn(logits, labels, reduction_override="sum"), none.sum())
    torch.testing.assert_close(loss_fn(logits, labels, avg_factor=4.0), none.sum() / 4.0)
    assert loss_fn.neg_grad.abs().sum() == 0  # eval never updates


def test_objectness_form_hand_worked() -> None:
    """The authors' two-stage EQLv2: C + 1 logits, the last one background; worked for C = 2 at z = 0."""
    loss = EQLv2Loss(2, objectness=True)
    logits = torch.zeros(2, 3, requires_grad=True)
    labels = torch.tensor([0, 2])  # a class-0 RoI and a background RoI (target 1 in the objectness column)
    # Fresh state: every weight 1, each of the 6 BCE terms is log 2; sum / 2 RoIs (mmdet's avg_factor).
    value = loss(logits, labels, avg_factor=2.0)
    torch.testing.assert_close(value, torch.tensor(3 * math.log(2)))
    # |sigmoid(0) - y| = 0.5 everywhere; only the 2 class columns are accumulated, not the objectness column.
    torch.testing.assert_close(loss.pos_grad, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(loss.neg_grad, torch.tensor([0.5, 1.0]))
    # Next call: r = (1, 0) -> neg_w = sigmoid(12 (r - 0.8)), pos_w = 1 + 4 (1 - neg_w); the objectness column
    # keeps weight 1 for its positive (row 1) and its negative (row 0).
    n0, n1 = 1 / (1 + math.exp(-2.4)), 1 / (1 + math.exp(9.6))
    p0 = 1 + 4 * (1 - n0)
    expected = math.log(2) * (p0 + n1 + 1 + n0 + n1 + 1) / 2
    torch.testing.assert_close(loss(logits.detach(), labels, avg_factor=2.0), torch.tensor(expected))


def test_objectness_scores_and_shapes() -> None:
    loss = EQLv2Loss(2, objectness=True)
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, 3.0]])
    s = logits.sigmoid()
    torch.testing.assert_close(loss.scores(logits), s[:, :2] * (1 - s[:, 2:]))
    torch.testing.assert_close(EQLv2Loss(2).scores(logits[:, :2]), s[:, :2])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        loss(torch.zeros(2, 2), torch.tensor([0, 2]))
