"""Tests for cytolt.losses.gol: the Gumbel activation, its log-space BCE, clamp, bias init, gradients, stability."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.losses.gol import (
    GUMBEL_CLAMP,
    GumbelLoss,
    gumbel_bias_init,
    gumbel_cdf,
    gumbel_log_odds,
    gumbel_log_probs,
    gumbel_loss,
)

LOG2 = math.log(2)


def test_activation_on_hand_worked_values() -> None:
    # z = 0: p = exp(-1); z = -log(log 2): p = exp(-log 2) = 1/2; z = 2: p = exp(-exp(-2)) = 0.8734.
    z = torch.tensor([0.0, -math.log(LOG2), 2.0], dtype=torch.float64)
    expected = torch.tensor([math.exp(-1), 0.5, math.exp(-math.exp(-2))], dtype=torch.float64)
    torch.testing.assert_close(gumbel_cdf(z), expected)
    log_p, log_q = gumbel_log_probs(z)
    torch.testing.assert_close(log_p, expected.log())
    torch.testing.assert_close(log_q, (1 - expected).log())
    torch.testing.assert_close(torch.sigmoid(gumbel_log_odds(z)), expected)


def test_loss_on_hand_worked_values() -> None:
    # z = 0: a positive costs -log exp(-1) = 1, a negative -log(1 - 1/e) = 0.45868.
    # z = -log(log 2) (p = 1/2): both cost log 2. Same row, so "none" keeps (1, 4).
    z = torch.tensor([[0.0, 0.0, -math.log(LOG2), -math.log(LOG2)]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, -math.log(1 - math.exp(-1)), LOG2, LOG2]], dtype=torch.float64)
    torch.testing.assert_close(gumbel_loss(z, y, reduction="none"), expected)
    torch.testing.assert_close(gumbel_loss(z, y), expected.mean())
    torch.testing.assert_close(gumbel_loss(z, y, reduction="sum"), expected.sum())


def test_bias_init_gives_the_prior() -> None:
    # pi = 0.01: b = -log(-log 0.01) = -log(4.60517) = -1.52718; the authors' -2 is pi = exp(-e^2).
    assert gumbel_bias_init(0.01) == pytest.approx(-1.52718, abs=1e-5)
    assert gumbel_bias_init(math.exp(-math.exp(2))) == pytest.approx(-2.0)
    for prior in (1e-4, 0.01, 0.3, 0.9):
        assert gumbel_cdf(torch.tensor(gumbel_bias_init(prior), dtype=torch.float64)).item() == pytest.approx(
            prior, rel=1e-12
        )
    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match=r"prior must be in \(0, 1\)"):
            gumbel_bias_init(bad)


def test_limits() -> None:
    # z -> +inf: p -> 1, a positive costs exp(-z) -> 0 and a negative -log(1 - p) -> z.
    # z -> -inf: p -> 0, a positive costs exp(-z) and a negative -log(1 - p) ~ p -> 0.
    z = torch.tensor([[30.0, 30.0, -3.0, -3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    loss = gumbel_loss(z, y, clamp=None, reduction="none")[0]
    assert loss[0].item() == pytest.approx(math.exp(-30), rel=1e-9)
    assert loss[1].item() == pytest.approx(30.0 + math.exp(-30) / 2, rel=1e-15)
    assert loss[2].item() == pytest.approx(math.exp(3), rel=1e-12)
    assert loss[3].item() == pytest.approx(-math.log(1 - math.exp(-math.exp(3))), rel=1e-9)
    assert loss[3].item() < 2e-8


def test_asymmetry_against_the_sigmoid() -> None:
    # The left tail falls doubly exponentially, p(-2) = exp(-e^2) = 6.2e-4 against the sigmoid's 0.119, and
    # p(0) = 1/e; the right tail is the sigmoid's, 1 - p ~ exp(-z).
    z = torch.tensor([-2.0, 0.0, 12.0], dtype=torch.float64)
    p = gumbel_cdf(z)
    assert p[0].item() == pytest.approx(math.exp(-math.exp(2))) and p[0] < torch.sigmoid(z[0]) / 100
    assert p[1].item() == pytest.approx(math.exp(-1))
    assert ((1 - p[2]) / (1 - torch.sigmoid(z[2]))).item() == pytest.approx(1.0, abs=1e-5)


def test_clamp_is_the_authors_and_stops_the_gradient_outside() -> None:
    assert GUMBEL_CLAMP == (-4.0, 10.0)
    # A positive below -4 costs what one at -4 does, exp(4) = 54.6, and gets no gradient; likewise above 10.
    z = torch.tensor([[-9.0, -4.0, -3.5, 12.0, 10.0, 9.5]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    loss = gumbel_loss(z, y, reduction="none")[0]
    assert loss[0] == loss[1] and loss[0].item() == pytest.approx(math.exp(4), rel=1e-6)
    assert loss[3] == loss[4]
    loss.sum().backward()
    assert z.grad[0, 0] == 0 and z.grad[0, 3] == 0
    assert z.grad[0, 2].item() == pytest.approx(-math.exp(3.5), rel=1e-6) and z.grad[0, 5] > 0


def test_gradient_in_closed_form() -> None:
    # d/dz of a positive's exp(-z) is -exp(-z); of a negative's -log(1 - p) it is u p / (1 - p), u = exp(-z).
    z = torch.tensor([-2.5, -0.3, 0.7, 3.0, 8.0, 25.0], dtype=torch.float64, requires_grad=True)
    for target in (1.0, 0.0):
        (grad,) = torch.autograd.grad(
            gumbel_loss(
                z[None], torch.full((1, 6), target, dtype=torch.float64), clamp=None, reduction="sum"
            ),
            z,
        )
        u, p = torch.exp(-z.detach()), gumbel_cdf(z.detach())
        expected = -u if target else u * p / -torch.expm1(-u)
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-300)


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    # Spread over both branches of log(1 - p) (the series takes over above 20) and the clamp's inside.
    logits = (torch.rand(5, 4, dtype=torch.float64) * 30 - 5).requires_grad_()
    targets = (torch.rand(5, 4) > 0.5).double()
    assert torch.autograd.gradcheck(lambda z: gumbel_loss(z, targets, clamp=None, reduction="sum"), (logits,))
    inside = (torch.rand(5, 4, dtype=torch.float64) * 12 - 3.5).requires_grad_()  # within (-4, 10)
    assert torch.autograd.gradcheck(lambda z: gumbel_loss(z, targets, reduction="sum"), (inside,))
    assert torch.autograd.gradcheck(gumbel_log_odds, (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_extreme_logits_stay_finite(dtype: torch.dtype) -> None:
    # Element-wise: a sum of several losses near 1e38 may overflow float32 by itself. float16 cannot hold the
    # unclamped gradient exp(50) of a positive at z = -50, so it is checked with the training clamp only.
    z = torch.tensor([-1e4, -200.0, -88.0, -50.0, 0.0, 19.99, 20.01, 40.0, 100.0, 1e4]).to(dtype)
    for clamp in (GUMBEL_CLAMP,) if dtype == torch.float16 else (GUMBEL_CLAMP, None):
        for target in (0.0, 1.0):
            logits = z.clone().requires_grad_()
            targets = torch.full((1, z.numel()), target, dtype=dtype)
            loss = gumbel_loss(logits[None], targets, clamp=clamp, reduction="none")
            loss.sum().backward()
            assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all(), (clamp, target)
    log_p, log_q = gumbel_log_probs(z)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_q).all()
    assert torch.isfinite(gumbel_log_odds(z)).all()


def test_log_space_beats_the_rounded_probability() -> None:
    # In float32, exp(-exp(-z)) rounds to 1 for z above ~17.3: the naive BCE of a negative is inf. Log space
    # keeps it, -log(1 - p) = z + exp(-z) / 2 (+ smaller terms).
    z = torch.tensor([20.0, 40.0, 100.0])
    assert torch.isinf(-torch.log(1 - gumbel_cdf(z))).all()
    _, log_q = gumbel_log_probs(z)
    torch.testing.assert_close(-log_q, z)


def test_module_matches_function_and_scores_with_the_gumbel() -> None:
    torch.manual_seed(2)
    logits = torch.randn(6, 3) * 3
    labels = torch.tensor([0, 1, 2, 3, 3, 0])
    targets = torch.nn.functional.one_hot(labels, 4)[:, :3].float()
    loss_fn = GumbelLoss(3, loss_weight=2.0)
    torch.testing.assert_close(loss_fn(logits, labels), 2.0 * gumbel_loss(logits, targets))
    weight = torch.rand(6)
    torch.testing.assert_close(
        loss_fn(logits, labels, weight, avg_factor=4.0),
        2.0 * (gumbel_loss(logits, targets, reduction="none") * weight[:, None]).sum() / 4.0,
    )
    torch.testing.assert_close(loss_fn.activation(logits), gumbel_cdf(logits))
    assert GumbelLoss()(torch.randn(2, 7), torch.tensor([0, 7])).shape == ()  # any C without num_classes
    assert set(loss_fn.state_dict()) == set()  # stateless


def test_module_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="min < max"):
        GumbelLoss(clamp=(10.0, -4.0))
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 3\)"):
        GumbelLoss(3)(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction must be one of"):
        GumbelLoss(reduction="avg")


def test_forward_and_backward_never_read_tensor_values_on_the_host() -> None:
    loss_fn = GumbelLoss(3).to("meta")
    logits = torch.empty(6, 3, device="meta", requires_grad=True)
    loss = loss_fn(logits, torch.empty(6, dtype=torch.long, device="meta"), torch.empty(6, device="meta"))
    loss.backward()
    assert loss.shape == () and logits.grad.shape == logits.shape
