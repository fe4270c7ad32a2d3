"""Tests for cytolt.losses.grad_libra: the property tests METHODS.md asks of the reconstruction, gradients, state."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cytolt.losses.focal import sigmoid_focal_loss
from cytolt.losses.grad_libra import GradLibraLoss, base_loss, calibrated_hardness, grad_libra_loss

# METHODS.md's form of the reconstruction: plain BCE as the base loss (the default adds focal modulation).
BCE = {"focal_gamma": 0.0, "focal_alpha": None}


def _batch(seed: int, n: int = 16, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c + 1, (n,), generator=g)


def _targets(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels, c + 1)[:, :c].float()


def _state(
    c: int, *, pos_grad: float, neg_grad: float, pos_h: float, neg_h: float
) -> dict[str, torch.Tensor]:
    return {
        "pos_grad": torch.full((c,), pos_grad),
        "neg_grad": torch.full((c,), neg_grad),
        "pos_hardness": torch.full((c,), pos_h),
        "neg_hardness": torch.full((c,), neg_h),
    }


def test_fresh_state_with_beta_zero_is_plain_bce() -> None:
    logits, labels = _batch(0)
    targets = _targets(labels, 3)
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(GradLibraLoss(3, beta=0.0, **BCE)(logits, labels), bce)
    fresh = _state(3, pos_grad=0, neg_grad=0, pos_h=0, neg_h=0)
    torch.testing.assert_close(grad_libra_loss(logits, targets, beta=0.0, **fresh, **BCE), bce)


def test_fresh_state_with_beta_zero_is_focal_loss_by_default() -> None:
    logits, labels = _batch(5)
    targets = _targets(labels, 3)
    focal = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="mean")
    torch.testing.assert_close(GradLibraLoss(3, beta=0.0)(logits, labels), focal)
    fresh = _state(3, pos_grad=0, neg_grad=0, pos_h=0, neg_h=0)
    torch.testing.assert_close(grad_libra_loss(logits, targets, beta=0.0, **fresh), focal)


def test_equal_classes_reduce_to_hardness_weighted_bce() -> None:
    # Every category has the same state: r = 0.5 / 1 = 0.5, s = sigmoid(12 (0.5 - 0.8)) = sigmoid(-3.6),
    # pos_w = 1 + 4 (1 - s), neg_w = s; gbar+ = 0.6, gbar- = 0.2. The loss is then the same hardness-weighted BCE
    # for every category: w_sign (|p - y| / gbar_sign)^beta BCE.
    logits, labels = _batch(1)
    targets = _targets(labels, 3)
    state = _state(3, pos_grad=0.5, neg_grad=1.0, pos_h=0.6, neg_h=0.2)
    s = 1 / (1 + math.exp(3.6))
    w = targets * (1 + 4 * (1 - s)) + (1 - targets) * s
    g = (torch.sigmoid(logits) - targets).abs()
    gbar = targets * 0.6 + (1 - targets) * 0.2
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    focal = sigmoid_focal_loss(logits, targets, reduction="none")
    for beta in (0.0, 0.5, 2.0):
        loss = grad_libra_loss(logits, targets, beta=beta, reduction="none", **state, **BCE)
        torch.testing.assert_close(loss, w * (g / gbar) ** beta * bce)
        loss = grad_libra_loss(logits, targets, beta=beta, reduction="none", **state)  # focal base
        torch.testing.assert_close(loss, w * (g / gbar) ** beta * focal)
    # and the categories are interchangeable: permuting the columns permutes the loss
    perm = torch.tensor([2, 0, 1])
    loss = grad_libra_loss(logits, targets, reduction="none", **state)
    torch.testing.assert_close(
        grad_libra_loss(logits[:, perm], targets[:, perm], reduction="none", **state), loss[:, perm]
    )


def test_harder_samples_of_a_category_weigh_more() -> None:
    # Two positives and two negatives of category 0: p = 0.9 / 0.3 (positives), p = 0.05 / 0.6 (negatives).
    p = torch.tensor([[0.9], [0.3], [0.05], [0.6]])
    logits = torch.log(p / (1 - p))
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    state = _state(1, pos_grad=1.0, neg_grad=2.0, pos_h=0.4, neg_h=0.1)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weight = grad_libra_loss(logits, targets, reduction="none", **state, **BCE) / bce
    assert weight[1] > weight[0]  # harder positive (g 0.7 > 0.1)
    assert weight[3] > weight[2]  # harder negative (g 0.6 > 0.05)
    torch.testing.assert_close(weight[1] / weight[0], torch.tensor([0.7 / 0.1]))  # beta = 1 by default
    # on top of focal modulation, the calibrated hardness still multiplies the hard sample's weight by 7
    focal_weight = grad_libra_loss(logits, targets, reduction="none", **state) / base_loss(logits, targets)
    torch.testing.assert_close(focal_weight[1] / focal_weight[0], torch.tensor([0.7 / 0.1]))


def test_low_balance_ratio_gives_heavier_positives_lighter_negatives() -> None:
    # category 0: r = 0.1 (positives starved), category 1: r = 1 (balanced); same logits for both columns.
    logits = torch.tensor([[0.3, 0.3], [-1.0, -1.0]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    state = {
        "pos_grad": torch.tensor([0.1, 1.0]),
        "neg_grad": torch.tensor([1.0, 1.0]),
        "pos_hardness": torch.tensor([0.5, 0.5]),
        "neg_hardness": torch.tensor([0.3, 0.3]),
    }
    loss = grad_libra_loss(logits, targets, reduction="none", **state)
    assert loss[0, 0] > loss[0, 1]  # positive of the starved category weighs more
    assert loss[1, 0] < loss[1, 1]  # its negative weighs less


def test_module_accumulates_gradient_backward_delivers_and_running_means() -> None:
    logits, labels = _batch(2)
    weight = torch.rand(16)
    loss_fn = GradLibraLoss(3, momentum=0.25, **BCE)
    z = logits.clone().requires_grad_()
    loss_fn(z, labels, weight, reduction_override="sum").backward()
    targets = _targets(labels, 3)
    # G+ / G- hold the gradient of the summed loss (|w h^beta (p - y)| times the label weight).
    torch.testing.assert_close(loss_fn.pos_grad, (z.grad.abs() * targets).sum(0))
    torch.testing.assert_close(loss_fn.neg_grad, (z.grad.abs() * (1 - targets)).sum(0))
    # First observation: the running means are the batch means of g weighted by the base loss (times weight).
    g = (torch.sigmoid(logits) - targets).abs()
    l0 = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight[:, None]
    first_pos = (l0 * g * targets).sum(0) / (l0 * targets).sum(0)
    first_neg = (l0 * g * (1 - targets)).sum(0) / (l0 * (1 - targets)).sum(0)
    torch.testing.assert_close(loss_fn.pos_hardness, first_pos)
    torch.testing.assert_close(loss_fn.neg_hardness, first_neg)
    # Second call: exponential average with momentum 0.25.
    logits2, _ = _batch(3)
    loss_fn(logits2, labels, weight)
    g2 = (torch.sigmoid(logits2) - targets).abs()
    l2 = F.binary_cross_entropy_with_logits(logits2, targets, reduction="none") * weight[:, None]
    second_pos = (l2 * g2 * targets).sum(0) / (l2 * targets).sum(0)
    torch.testing.assert_close(loss_fn.pos_hardness, 0.75 * first_pos + 0.25 * second_pos)


def test_category_absent_from_batch_keeps_its_hardness() -> None:
    loss_fn = GradLibraLoss(2)
    logits = torch.randn(4, 2)
    loss_fn(logits, torch.tensor([0, 0, 2, 2]))
    before = loss_fn.pos_hardness.clone()
    assert before[1] == 0 and loss_fn.pos_count[1] == 0  # category 1 never positive
    loss_fn(torch.randn(4, 2), torch.tensor([2, 2, 2, 2]))  # no positives at all
    torch.testing.assert_close(loss_fn.pos_hardness, before)


def test_calibrated_hardness_unknown_statistics_give_one() -> None:
    h = calibrated_hardness(torch.randn(3, 2), torch.zeros(3, 2), torch.zeros(2), torch.zeros(2), beta=1.0)
    torch.testing.assert_close(h, torch.ones(3, 2))


def test_gradcheck_and_detached_hardness() -> None:
    torch.manual_seed(4)
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    state = {k: v.double() for k, v in _state(3, pos_grad=0.3, neg_grad=1.0, pos_h=0.5, neg_h=0.2).items()}
    # The hardness factor depends on the logits but is detached (a weight, as in the paper's description), so
    # finite differences only agree with autograd when it is constant: beta = 0.
    assert torch.autograd.gradcheck(
        lambda z: grad_libra_loss(z, targets, beta=0.0, reduction="sum", **state), (logits,)
    )
    # With beta > 0 the gradient is w h^beta (p - y): the BCE gradient scaled by the detached weight.
    assert torch.autograd.gradcheck(
        lambda z: grad_libra_loss(z, targets, beta=0.0, reduction="sum", **state, **BCE), (logits,)
    )
    loss = grad_libra_loss(logits, targets, beta=1.5, reduction="sum", **state, **BCE)
    (grad,) = torch.autograd.grad(loss, logits)
    element = grad_libra_loss(logits, targets, beta=1.5, reduction="none", **state, **BCE)
    weight = element / F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(grad, weight.detach() * (torch.sigmoid(logits) - targets).detach())


def test_checkpoint_round_trip() -> None:
    trained = GradLibraLoss(3)
    for seed in range(4):
        trained(*_batch(seed))
    state = trained.state_dict()
    assert set(state) == {"pos_grad", "neg_grad", "pos_hardness", "neg_hardness", "pos_count", "neg_count"}
    restored = GradLibraLoss(3)
    restored.load_state_dict(state)
    logits, labels = _batch(10)
    torch.testing.assert_close(restored(logits, labels), trained(logits, labels))
    for name, buf in trained.state_dict().items():  # and both evolved identically
        torch.testing.assert_close(restored.state_dict()[name], buf)
    trained.reset()
    assert all(buf.abs().sum() == 0 for buf in trained.buffers())


def test_eval_mode_reads_state_without_changing_it() -> None:
    loss_fn = GradLibraLoss(3)
    loss_fn(*_batch(0))
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    loss_fn.eval()
    none = loss_fn(*_batch(1), reduction_override="none")
    assert none.shape == (16, 3)
    for name, buf in loss_fn.state_dict().items():
        torch.testing.assert_close(buf, before[name])


def test_gradient_state_matches_autograd_with_the_focal_base() -> None:
    # |d(w h^beta l0)/dz| for l0 = alpha_t g^fg BCE, summed per category and sign, is what G+ / G- accumulate.
    for beta, focal_gamma, focal_alpha in ((1.0, 2.0, 0.25), (0.5, 1.5, None)):
        logits, labels = _batch(6, n=40)
        loss_fn = GradLibraLoss(3, beta=beta, focal_gamma=focal_gamma, focal_alpha=focal_alpha)
        loss_fn(_batch(7, n=40)[0], labels)  # a prior state, so the weights differ from 1
        before = (loss_fn.pos_grad.clone(), loss_fn.neg_grad.clone())
        z = logits.clone().requires_grad_()
        loss_fn(z, labels, torch.rand(40), reduction_override="sum").backward()
        targets = _targets(labels, 3)
        torch.testing.assert_close(
            loss_fn.pos_grad - before[0], (z.grad.abs() * targets).sum(0), rtol=1e-4, atol=1e-6
        )
        torch.testing.assert_close(
            loss_fn.neg_grad - before[1], (z.grad.abs() * (1 - targets)).sum(0), rtol=1e-4, atol=1e-6
        )


def test_plain_hardness_mean_is_the_label_weighted_mean_of_g() -> None:
    logits, labels = _batch(4)
    weight = torch.rand(16)
    plain = GradLibraLoss(3, hardness_mean="plain", **BCE)
    loss_weighted = GradLibraLoss(3, **BCE)
    plain(logits, labels, weight)
    loss_weighted(logits, labels, weight)
    targets = _targets(labels, 3)
    g = (torch.sigmoid(logits) - targets).abs()
    w = weight[:, None].expand_as(g)
    torch.testing.assert_close(plain.pos_hardness, (w * g * targets).sum(0) / (w * targets).sum(0))
    torch.testing.assert_close(
        plain.neg_hardness, (w * g * (1 - targets)).sum(0) / (w * (1 - targets)).sum(0)
    )
    # Weighting by the loss favours the hard samples (large l0 where g is large): a higher mean.
    assert (loss_weighted.neg_hardness > plain.neg_hardness).all()
    try:
        GradLibraLoss(3, hardness_mean="median")
    except ValueError as err:
        assert "hardness_mean" in str(err)
    else:
        raise AssertionError("an unknown hardness_mean must be refused")
