"""Tests for cytolt.losses.efl: reduction to focal loss, the category-dependent exponent, its gradient state."""

from __future__ import annotations

import math

import torch

from cytolt.losses.efl import EqualizedFocalLoss, efl_gamma, efl_grad_magnitude, equalized_focal_loss
from cytolt.losses.focal import sigmoid_focal_loss


def _batch(seed: int, n: int = 12, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    labels = torch.randint(0, c + 1, (n,), generator=g)  # c = background
    return logits, labels


def test_balanced_state_is_focal_loss() -> None:
    logits, labels = _batch(0)
    targets = torch.nn.functional.one_hot(labels, 4)[:, :3].float()
    for ratio in (1.0, 3.0):  # r >= 1 is clamped to 1: no extra focusing
        efl = equalized_focal_loss(logits, targets, torch.full((3,), ratio), reduction="none")
        torch.testing.assert_close(efl, sigmoid_focal_loss(logits, targets, reduction="none"))
    fresh = EqualizedFocalLoss(3)  # no statistics yet: r = 1
    torch.testing.assert_close(fresh(logits, labels), sigmoid_focal_loss(logits, targets))


def test_hand_computed_case() -> None:
    # r = 0.5 -> gamma = 2 + 8 * (1 - 0.5) = 6, weight gamma / 2 = 3.
    # z = 0 -> p_t = 0.5, BCE = log 2: positive 0.25 * 3 * 0.5^6 * log 2, negative 0.75 * 3 * 0.5^6 * log 2.
    loss = equalized_focal_loss(
        torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([0.5, 0.5]), reduction="none"
    )
    expected = torch.tensor([[0.25 * 3 * 0.5**6 * math.log(2), 0.75 * 3 * 0.5**6 * math.log(2)]])
    torch.testing.assert_close(loss, expected)


def test_gamma_limits() -> None:
    gamma = efl_gamma(torch.tensor([-1.0, 0.0, 0.25, 1.0, 5.0]))
    torch.testing.assert_close(gamma, torch.tensor([10.0, 10.0, 8.0, 2.0, 2.0]))


def test_gradcheck() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(4, 3) > 0.5).double()
    pos_neg = torch.tensor([0.1, 0.6, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: equalized_focal_loss(z, targets, pos_neg, reduction="sum"), (logits,)
    )


def test_closed_form_gradient_matches_autograd() -> None:
    logits, labels = _batch(2)
    targets = torch.nn.functional.one_hot(labels, 4)[:, :3].double()
    z = logits.double().requires_grad_()
    pos_neg = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    equalized_focal_loss(z, targets, pos_neg, reduction="sum").backward()
    torch.testing.assert_close(efl_grad_magnitude(z.detach(), targets, pos_neg), z.grad.abs())


def test_state_accumulates_the_gradient_backward_delivers() -> None:
    logits, labels = _batch(3)
    weight = torch.rand(12)
    loss_fn = EqualizedFocalLoss(3, loss_weight=2.0)
    loss_fn.pos_grad.fill_(1.0)  # a prior state: r = 1/4, so gamma differs per category from 2
    loss_fn.neg_grad.fill_(4.0)
    z = logits.clone().requires_grad_()
    loss_fn(z, labels, weight, avg_factor=5.0).backward()
    targets = torch.nn.functional.one_hot(labels, 4)[:, :3].float()
    grad = z.grad.abs()
    torch.testing.assert_close(loss_fn.pos_grad - 1.0, (grad * targets).sum(0))
    torch.testing.assert_close(loss_fn.neg_grad - 4.0, (grad * (1 - targets)).sum(0))


def test_rare_category_gets_larger_gamma_after_training_steps() -> None:
    # category 0 has positives, category 1 never does: its ratio stays 0 and its gamma goes to gamma_b + s.
    loss_fn = EqualizedFocalLoss(2)
    labels = torch.tensor([0, 0, 2, 2, 2, 2])
    for seed in range(3):
        loss_fn(_batch(seed, 6, 2)[0], labels)
    gamma = efl_gamma(loss_fn.pos_neg)
    assert gamma[1] == 10.0
    assert 2.0 <= gamma[0] < 10.0


def test_eval_mode_and_reset() -> None:
    logits, labels = _batch(4)
    loss_fn = EqualizedFocalLoss(3).eval()
    loss_fn(logits, labels)
    assert loss_fn.pos_grad.abs().sum() == 0 and loss_fn.neg_grad.abs().sum() == 0
    loss_fn.train()(logits, labels)
    assert loss_fn.neg_grad.sum() > 0
    loss_fn.reset()
    assert loss_fn.neg_grad.abs().sum() == 0


def test_state_dict_round_trip() -> None:
    trained = EqualizedFocalLoss(3)
    for seed in range(3):
        trained(*_batch(seed))
    restored = EqualizedFocalLoss(3)
    restored.load_state_dict(trained.state_dict())
    assert set(trained.state_dict()) == {"pos_grad", "neg_grad"}
    logits, labels = _batch(9)
    torch.testing.assert_close(restored(logits, labels), trained(logits, labels))
    torch.testing.assert_close(restored.pos_grad, trained.pos_grad)


def test_reductions() -> None:
    logits, labels = _batch(5)
    loss_fn = EqualizedFocalLoss(3).eval()
    none = loss_fn(logits, labels, reduction_override="none")
    assert none.shape == (12, 3)
    torch.testing.assert_close(loss_fn(logits, labels, reduction_override="sum"), none.sum())
    torch.testing.assert_close(loss_fn(logits, labels), none.mean())
