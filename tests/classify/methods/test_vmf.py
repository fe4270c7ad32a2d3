"""Tests for cytolt.classify.methods.vmf: the log-Bessel term against the power series and scipy, the vMF
normaliser, KL and overlap coefficient (limits, gradients), the ICD / CFC losses, the calibration and the head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F

from cytolt.classify.methods.vmf import (
    VMFHead,
    VMFLoss,
    aux_loss_weight,
    bessel_ratio,
    calibrate_kappa,
    class_feature_consistency_loss,
    inter_class_overlap_loss,
    log_bessel_iv,
    select_alpha,
    vmf_kl,
    vmf_log_normalizer,
    vmf_logits,
    vmf_mean_resultant,
    vmf_overlap,
)
from cytolt.classify.synth_crops import make_crop_set
from cytolt.classify.train import train_classifier

ORDERS = (0.5, 7.0, 63.0, 255.0)  # p = 3, 16, 128, 512


@pytest.fixture(scope="module")
def tiny_crops():
    """32-px synthetic crops: 11 classes, 12 down to 3 crops for training, 2 each for validation."""
    return make_crop_set(size=32, head=12, imbalance=4), make_crop_set(size=32, head=2, imbalance=1, seed=1)


KAPPAS = torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4], dtype=torch.float64)


def series_log_iv(nu: float, kappa: torch.Tensor) -> torch.Tensor:
    """Reference: log sum_m (k/2)^(2m+nu) / (m! Gamma(m+nu+1)), summed in log space over enough terms."""
    k = kappa.to(torch.float64)
    terms = int(k.max()) + 20 * math.isqrt(int(k.max()) + 1) + 200  # the terms peak near m = k/2
    m = torch.arange(terms, dtype=torch.float64)[None, :]
    log_terms = (2 * m + nu) * torch.log(k[:, None] / 2) - torch.lgamma(m + 1) - torch.lgamma(m + nu + 1)
    return torch.logsumexp(log_terms, dim=1)


@pytest.mark.parametrize("nu", ORDERS)
def test_log_bessel_matches_the_series(nu: float) -> None:
    got = log_bessel_iv(nu, KAPPAS)
    ref = series_log_iv(nu, KAPPAS)
    # log I reaches ~1e4 at kappa = 1e4: compare relative to max(|log I|, 1).
    assert float(((got - ref).abs() / ref.abs().clamp(min=1)).max()) < 1e-10


@pytest.mark.parametrize("nu", ORDERS)
def test_log_bessel_matches_scipy(nu: float) -> None:
    ive = scipy.special.ive(nu, KAPPAS.numpy())  # exp(-k) I_nu(k); underflows to 0 for nu=255, small k
    ok = ive > 0
    ref = np.log(ive[ok]) + KAPPAS.numpy()[ok]
    got = log_bessel_iv(nu, KAPPAS).numpy()[ok]
    assert ok.sum() >= 6
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_half_order_closed_form_and_zero_order_small_argument() -> None:
    # I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x)
    x = KAPPAS
    exact = 0.5 * torch.log(2 / (math.pi * x)) + x + torch.log1p(-torch.exp(-2 * x)) - math.log(2)
    torch.testing.assert_close(log_bessel_iv(0.5, x), exact, rtol=1e-12, atol=1e-10)
    # I_0(x) = 1 + x^2/4 + x^4/64 + ... ; at x = 0.01 the third term is below 1e-16.
    x0 = torch.tensor([0.01], dtype=torch.float64)
    torch.testing.assert_close(
        log_bessel_iv(0.0, x0), torch.log1p(torch.tensor([0.01**2 / 4 + 0.01**4 / 64], dtype=torch.float64))
    )


def test_ratio_and_monotonicity() -> None:
    for nu in ORDERS:
        log_i = log_bessel_iv(nu, KAPPAS)
        assert bool((log_i.diff() > 0).all())  # increasing in kappa
        assert bool((log_bessel_iv(nu + 1, KAPPAS) < log_i).all())  # decreasing in the order
        ratio = bessel_ratio(nu, KAPPAS)
        torch.testing.assert_close(ratio, torch.exp(log_bessel_iv(nu + 1, KAPPAS) - log_i), rtol=1e-9, atol=0)
        assert bool(((ratio > 0) & (ratio < 1)).all()) and bool((ratio.diff() > 0).all())
    # A_3(k) = coth(k) - 1/k for the sphere in R^3; A_p(k) -> 1 as k -> inf, ~ k/p as k -> 0.
    k = torch.tensor([0.5, 2.0, 40.0], dtype=torch.float64)
    torch.testing.assert_close(vmf_mean_resultant(k, 3), 1 / torch.tanh(k) - 1 / k)
    assert float(vmf_mean_resultant(torch.tensor([1e4], dtype=torch.float64), 16)) > 0.999
    torch.testing.assert_close(
        vmf_mean_resultant(torch.tensor([1e-3], dtype=torch.float64), 16),
        torch.tensor([1e-3 / 16], dtype=torch.float64),
        rtol=1e-5,
        atol=0,
    )


def test_log_normalizer_closed_form_in_three_dimensions_and_dtype() -> None:
    # p = 3: C_3(k) = k / (4 pi sinh k)
    k = torch.tensor([0.2, 1.0, 16.0, 500.0], dtype=torch.float64)
    exact = torch.log(k) - math.log(2 * math.pi) - k - torch.log1p(-torch.exp(-2 * k))
    torch.testing.assert_close(vmf_log_normalizer(k, 3), exact, rtol=1e-12, atol=1e-10)
    k32 = torch.tensor([16.0, 1000.0])
    out = vmf_log_normalizer(k32, 128)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert bool((vmf_log_normalizer(KAPPAS, 128).diff() < 0).all())  # d/dk log C = -A < 0
    with pytest.raises(ValueError, match="dimension p must be >= 2"):
        vmf_log_normalizer(k, 1)


def test_gradients_of_the_bessel_term() -> None:
    k = torch.tensor([0.3, 2.0, 15.0, 120.0, 900.0], dtype=torch.float64, requires_grad=True)
    for nu in (0.5, 7.0, 63.0):
        assert torch.autograd.gradcheck(lambda x, nu=nu: log_bessel_iv(nu, x), (k,))
        assert torch.autograd.gradcheck(lambda x, nu=nu: bessel_ratio(nu, x), (k,))
        # d/dk log I_nu(k) = nu / k + I_{nu+1} / I_nu
        (grad,) = torch.autograd.grad(log_bessel_iv(nu, k).sum(), k)
        torch.testing.assert_close(grad, nu / k.detach() + bessel_ratio(nu, k.detach()))
    # d/dk log C_p(k) = -A_p(k)
    (grad,) = torch.autograd.grad(vmf_log_normalizer(k, 16).sum(), k)
    torch.testing.assert_close(grad, -vmf_mean_resultant(k.detach(), 16))


def test_overlap_limits() -> None:
    torch.manual_seed(0)
    mu = F.normalize(torch.randn(4, 16, dtype=torch.float64), dim=1)
    kappa = torch.tensor([2.0, 16.0, 40.0, 300.0], dtype=torch.float64)
    overlap = vmf_overlap(mu, kappa)
    torch.testing.assert_close(overlap.diagonal(), torch.ones(4, dtype=torch.float64))  # with itself: 1
    assert bool(((overlap > 0) & (overlap <= 1)).all())
    # Opposite directions, growing concentration: the overlap falls towards 0.
    e = torch.zeros(1, 16, dtype=torch.float64)
    e[0, 0] = 1
    far = [float(vmf_overlap(e, torch.tensor([k]), -e, torch.tensor([k]))) for k in (1.0, 10.0, 100.0, 1e3)]
    assert far == sorted(far, reverse=True) and far[-1] < 1e-3
    # Same direction, different concentrations: KL > 0, overlap < 1; KL is not symmetric.
    kl = vmf_kl(e, torch.tensor([5.0], dtype=torch.float64), e, torch.tensor([50.0], dtype=torch.float64))
    kl_back = vmf_kl(
        e, torch.tensor([50.0], dtype=torch.float64), e, torch.tensor([5.0], dtype=torch.float64)
    )
    assert float(kl) > 0 and float(kl_back) > 0 and not math.isclose(float(kl), float(kl_back))


def test_kl_hand_worked_in_three_dimensions() -> None:
    # p = 3, orthogonal directions, kappa_i = 2, kappa_j = 3: KL = A(2) * 2 + log C(2) - log C(3),
    # A_3(2) = coth 2 - 1/2, log C_3(k) = log k - log(4 pi sinh k).
    mu_i = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    mu_j = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    a = 1 / math.tanh(2) - 0.5
    log_c = lambda k: math.log(k) - math.log(4 * math.pi * math.sinh(k))  # noqa: E731
    expected = a * 2 + log_c(2) - log_c(3)
    got = vmf_kl(
        mu_i, torch.tensor([2.0], dtype=torch.float64), mu_j, torch.tensor([3.0], dtype=torch.float64)
    )
    assert math.isclose(float(got), expected, rel_tol=1e-12)
    assert math.isclose(
        float(vmf_overlap(mu_i, torch.tensor([2.0]), mu_j, torch.tensor([3.0]))),
        1 / (1 + expected),
        rel_tol=1e-6,
    )


def test_icd_and_cfc_losses() -> None:
    torch.manual_seed(1)
    e = torch.eye(3, 8, dtype=torch.float64)
    kappa = torch.full((3,), 16.0, dtype=torch.float64)
    # ICD: classes on orthogonal axes overlap less than classes bunched around one direction.
    bunched = F.normalize(e + 5 * torch.ones(1, 8, dtype=torch.float64), dim=1)
    assert float(inter_class_overlap_loss(e, kappa)) < float(inter_class_overlap_loss(bunched, kappa))
    # Off-diagonal mean, by hand: all pairs orthogonal with equal kappa -> KL = A(16) * 16 each.
    a = float(vmf_mean_resultant(torch.tensor([16.0], dtype=torch.float64), 8))
    assert math.isclose(float(inter_class_overlap_loss(e, kappa)), 1 / (1 + 16 * a), rel_tol=1e-12)
    with pytest.raises(ValueError, match="at least 2 classes"):
        inter_class_overlap_loss(e[:1], kappa[:1])
    # CFC: features on their class directions -> 0; class 2 absent from the batch is not counted.
    features = torch.cat([3 * e[:1], 2 * e[:1], e[1:2]])
    labels = torch.tensor([0, 0, 1])
    assert float(class_feature_consistency_loss(e, kappa, features, labels)) < 1e-12
    # Class 1's features orthogonal to its direction: 1 - 1/(1 + A 16), averaged with class 0's 0.
    features_off = torch.cat([e[:1], e[2:3]])
    got = class_feature_consistency_loss(e, kappa, features_off, torch.tensor([0, 1]))
    assert math.isclose(float(got), 0.5 * (1 - 1 / (1 + 16 * a)), rel_tol=1e-12)
    with pytest.raises(ValueError, match="features must be"):
        class_feature_consistency_loss(e, kappa, torch.zeros(2, 5), torch.tensor([0, 1]))


def test_loss_gradients() -> None:
    torch.manual_seed(2)
    mu = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    kappa = torch.tensor([3.0, 8.0, 20.0], dtype=torch.float64, requires_grad=True)
    features = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(inter_class_overlap_loss, (mu, kappa))
    assert torch.autograd.gradcheck(
        lambda m, k, f: class_feature_consistency_loss(m, k, f, labels), (mu, kappa, features)
    )
    assert torch.autograd.gradcheck(lambda f, m, k: vmf_logits(f, m, k), (features, mu, kappa))


def test_aux_weight_schedule() -> None:
    assert aux_loss_weight(0, 10) == 0.2
    assert math.isclose(aux_loss_weight(5, 10), 0.2 * 0.5**0.9)
    assert aux_loss_weight(10, 10) == 0.0
    with pytest.raises(ValueError):
        aux_loss_weight(11, 10)


def test_calibrate_kappa() -> None:
    kappa = torch.tensor([10.0, 20.0, 40.0])
    overlap = torch.tensor([0.5, 0.2, 0.3])  # rescaled onto [10, 40]: 40, 10, 20
    torch.testing.assert_close(calibrate_kappa(kappa, overlap, 1.0), kappa)
    torch.testing.assert_close(calibrate_kappa(kappa, overlap, 0.0), torch.tensor([40.0, 10.0, 20.0]))
    torch.testing.assert_close(
        calibrate_kappa(kappa, overlap, 0.5), torch.sqrt(kappa * torch.tensor([40.0, 10.0, 20.0]))
    )
    torch.testing.assert_close(
        calibrate_kappa(kappa, torch.full((3,), 0.4), 0.0), kappa
    )  # nothing to rank by
    with pytest.raises(ValueError, match="alpha"):
        calibrate_kappa(kappa, overlap, 1.5)


def test_head_modes_prior_and_state_dict() -> None:
    torch.manual_seed(3)
    head = VMFHead(8, 3, class_counts=[90, 9, 1])
    features = torch.randn(5, 8)
    with torch.no_grad():
        head.kappa.copy_(torch.tensor([0.5, 16.0, 30.0]))  # 0.5 is clamped to kappa_min = 1
    torch.testing.assert_close(head.concentrations(), torch.tensor([1.0, 16.0, 30.0]))
    head.train()
    train_logits = head(features)
    head.eval()
    eval_logits = head(features)
    assert train_logits.shape == (5, 3)
    # Training adds log n_c / N; at alpha = 1 evaluation is the same without it.
    torch.testing.assert_close(
        train_logits - eval_logits, torch.log(torch.tensor([0.9, 0.09, 0.01])).expand(5, 3)
    )
    expected = vmf_logits(features, head.mu, head.concentrations())
    torch.testing.assert_close(eval_logits, expected)
    head.set_alpha(0.0)
    scale = calibrate_kappa(head.concentrations(), head.overlap().mean(1), 0.0)
    torch.testing.assert_close(
        head(features), vmf_logits(features, head.mu, head.concentrations(), scale=scale)
    )
    # A fresh head loading the state dict scores identically, alpha and prior included.
    again = VMFHead(8, 3)
    again.load_state_dict(head.state_dict())
    again.eval()
    torch.testing.assert_close(again(features), head(features))
    assert set(head.state_dict()) == {"mu", "kappa", "log_prior", "alpha"}
    losses = head.aux_losses(features, torch.tensor([0, 1, 2, 0, 1]))
    assert set(losses) == {"icd", "cfc"} and all(bool(torch.isfinite(v)) for v in losses.values())
    with pytest.raises(ValueError, match="class_counts"):
        VMFHead(8, 3, class_counts=[1, 0, 2])
    with pytest.raises(ValueError, match="alpha"):
        head.set_alpha(-0.1)


def test_select_alpha_picks_the_best_and_prefers_mild() -> None:
    torch.manual_seed(4)
    head = VMFHead(4, 3)
    with torch.no_grad():
        head.kappa.copy_(torch.tensor([2.0, 10.0, 40.0]))
    features = torch.randn(300, 4)
    head.eval()
    head.set_alpha(0.0)
    labels = head(features).argmax(1)  # the labels alpha = 0 predicts perfectly
    head.set_alpha(1.0)
    assert bool((head(features).argmax(1) != labels).any())  # ... and alpha = 1 does not
    head.train()
    alpha, scores = select_alpha(head, features, labels)
    assert len(scores) == 11 and scores[0.0] == 1.0 > scores[1.0]
    assert scores[alpha] == 1.0 and all(
        a <= alpha for a, s in scores.items() if s == 1.0
    )  # ties: the mildest
    assert float(head.alpha) == alpha and head.training  # alpha set on the head, mode restored


# ----------------------------------------------------------------------------------------------- in the training loop


def test_vmf_loss_is_ce_plus_the_scheduled_aux_terms() -> None:
    torch.manual_seed(5)
    head = VMFHead(6, 3, class_counts=[10, 5, 1])
    loss_fn = VMFLoss(head, epochs=4)
    features, labels = torch.randn(5, 6), torch.tensor([0, 0, 1, 2, 1])
    head.train()
    logits = head(features)  # the pre-hook keeps these features for CFC
    aux = head.aux_losses(features, labels)
    expected = F.cross_entropy(logits, labels) + 0.2 * (aux["icd"] + aux["cfc"])
    torch.testing.assert_close(loss_fn(logits, labels), expected)
    assert loss_fn.set_epoch(2) == pytest.approx(0.2 * 0.5**0.9)
    head.eval()
    head(features)  # evaluation batches are not kept
    with pytest.raises(RuntimeError, match="no training batch"):
        loss_fn(logits, labels)
    assert loss_fn.set_epoch(4) == 0.0  # last epoch: CE alone, no features needed
    torch.testing.assert_close(loss_fn(logits, labels), F.cross_entropy(logits, labels))
    loss_fn.close()
    assert not head._forward_pre_hooks and not list(loss_fn.parameters())  # the head stays the model's
    with pytest.raises(ValueError, match="VMFHead"):
        VMFLoss(torch.nn.Linear(6, 3), epochs=1)


def test_vmf_method_in_the_loop(tiny_crops) -> None:
    train, val = tiny_crops
    result = train_classifier(train, val, method="vmf", epochs=2, width=4, progress=False)
    head = result.model.head
    assert isinstance(head, VMFHead) and not head._forward_pre_hooks
    assert result.head["type"] == "vmf" and float(head.alpha) == result.head["alpha"]
    assert set(result.head["alpha_sweep"]) == {f"{0.1 * i:.1f}" for i in range(11)}
    assert result.head["alpha_sweep"][f"{result.head['alpha']:.1f}"] == max(
        result.head["alpha_sweep"].values()
    )
    rows = result.history
    assert [r["vmf_aux_weight"] for r in rows] == [pytest.approx(0.2 * 0.5**0.9), 0.0]
    assert len(rows[0]["vmf_kappa"]) == len(train.class_names) and 0 < rows[0]["vmf_icd"] <= 1
    # The training prior is log n_c / N of the training crops.
    counts = torch.as_tensor(train.counts(), dtype=torch.float32)
    torch.testing.assert_close(head.log_prior, torch.log(counts / counts.sum()))
    # A fixed alpha skips the sweep; without val there is nothing to choose on and alpha is 1.
    fixed = train_classifier(
        train, val, method="vmf", epochs=0, width=4, progress=False, options={"alpha": 0.3}
    )
    assert fixed.head["alpha"] == 0.3 and "alpha_sweep" not in fixed.head
    alone = train_classifier(train, None, method="vmf", epochs=0, width=4, progress=False)
    assert alone.head["alpha"] == 1.0
