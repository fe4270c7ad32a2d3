"""Tests for cytolt.calibration: NorCal (softmax and sigmoid), tau-norm, logit adjustment, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.calibration import logit_adjust, norcal, norcal_sigmoid, tau_norm


def test_norcal_by_hand() -> None:
    # Two foreground classes with 10 and 100 training instances, background last, gamma = 1:
    # scores exp(1)/10, exp(2)/100, exp(0.5) (background untouched), then divided by their sum.
    logits = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    scores = [math.exp(1.0) / 10, math.exp(2.0) / 100, math.exp(0.5)]
    expected = torch.tensor([[s / sum(scores) for s in scores]], dtype=torch.float64)
    torch.testing.assert_close(norcal(logits, torch.tensor([10.0, 100.0]), gamma=1.0), expected)


def test_norcal_gamma_zero_is_softmax() -> None:
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    probs = norcal(logits, torch.tensor([1.0, 30.0, 500.0, 7.0]), gamma=0.0)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))


def test_norcal_moves_mass_from_frequent_to_rare() -> None:
    logits = torch.zeros(1, 3)
    counts = torch.tensor([1.0, 1000.0])
    plain, calibrated = norcal(logits, counts, 0.0), norcal(logits, counts, 0.5)
    torch.testing.assert_close(calibrated.sum(dim=1), torch.ones(1))
    assert calibrated[0, 1] < plain[0, 1]  # frequent class loses
    assert calibrated[0, 0] / calibrated[0, 2] == pytest.approx(1.0)  # N=1: rare vs background ratio kept


def test_norcal_rejects_bad_shapes_and_counts() -> None:
    with pytest.raises(ValueError, match="background last"):
        norcal(torch.zeros(2, 3), torch.tensor([1.0, 2.0, 3.0]), 1.0)
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        norcal(torch.zeros(2, 3), torch.tensor([4.0, 0.0]), 1.0)


def test_norcal_sigmoid_is_two_way_norcal_against_a_zero_background() -> None:
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts = torch.tensor([3.0, 40.0, 900.0])
    got = norcal_sigmoid(z, counts, gamma=0.7)
    for c in range(3):
        two_way = torch.stack([z[:, c], torch.zeros_like(z[:, c])], dim=1)
        torch.testing.assert_close(got[:, c], norcal(two_way, counts[c : c + 1], 0.7)[:, 0])
    torch.testing.assert_close(norcal_sigmoid(z, counts, 0.0), torch.sigmoid(z))


def test_tau_norm_limits_and_by_hand() -> None:
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(tau_norm(w, 0.0), w)
    torch.testing.assert_close(tau_norm(w, 1.0).norm(dim=1), torch.ones(2))
    # tau = 0.5: row norms 5 and 2 -> rows divided by sqrt(5) and sqrt(2).
    torch.testing.assert_close(tau_norm(w, 0.5), torch.stack([w[0] / math.sqrt(5.0), w[1] / math.sqrt(2.0)]))


def test_tau_norm_conv_classifier_normalises_each_filter() -> None:
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    out = tau_norm(w, 1.0)
    assert out.shape == w.shape
    torch.testing.assert_close(out.flatten(1).norm(dim=1), torch.ones(6))
    with pytest.raises(ValueError, match=r"\(C, D\)"):
        tau_norm(torch.ones(3), 1.0)


def test_logit_adjust_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0]])
    priors = torch.tensor([0.9, 0.1])
    expected = torch.tensor([[2.0 - math.log(0.9), 1.0 - math.log(0.1)]])
    torch.testing.assert_close(logit_adjust(logits, priors, tau=1.0), expected)
    torch.testing.assert_close(logit_adjust(logits, priors, tau=0.0), logits)
    # The adjustment flips the arg-max to the rare class here: 2.105 < 3.303.
    assert logit_adjust(logits, priors).argmax(dim=1).item() == 1


def test_logit_adjust_counts_and_priors_give_same_ranking() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    counts = torch.tensor([500.0, 50.0, 5.0, 1.0])
    a, b = logit_adjust(logits, counts), logit_adjust(logits, counts / counts.sum())
    torch.testing.assert_close(a - b, torch.full_like(a, -math.log(counts.sum().item())))
    with pytest.raises(ValueError, match="last dimension"):
        logit_adjust(logits, counts[:3])


# ---------------------------------------------------------------------------------------------- tau_norm_classifier


def test_tau_norm_classifier_moves_class_rows_only_and_keeps_their_mean_norm() -> None:
    from cytolt.calibration import tau_norm_classifier

    # Class rows of norms 3 and 1 (mean 2), then a background row of norm 10.
    w = torch.tensor([[3.0, 0.0], [0.0, 1.0], [6.0, 8.0]])
    out = tau_norm_classifier(w, 1.0, num_classes=2, extra=1)
    # tau = 1: each class row has norm mean_norm ** 1 = 2; the direction stays; the background row is untouched.
    torch.testing.assert_close(out, torch.tensor([[2.0, 0.0], [0.0, 2.0], [6.0, 8.0]]))
    # tau = 0.5: w_c * 2**0.5 / ||w_c||**0.5.
    half = tau_norm_classifier(w, 0.5, num_classes=2, extra=1)
    torch.testing.assert_close(half[:2].norm(dim=1), torch.tensor([3 * (2 / 3) ** 0.5, 2**0.5]))
    # Without the mean rescale it is Kang et al.'s tau-norm on the class rows.
    torch.testing.assert_close(
        tau_norm_classifier(w, 1.0, num_classes=2, extra=1, keep_mean_norm=False)[:2], torch.eye(2)
    )
    assert torch.equal(tau_norm_classifier(w, 0.0, num_classes=2, extra=1), w)


def test_tau_norm_classifier_anchor_groups_and_errors() -> None:
    from cytolt.calibration import tau_norm_classifier

    # A dense head's conv: 2 anchors x (2 classes + background), (6, 1, 1, 1).
    w = torch.tensor([3.0, 1.0, 9.0, 1.0, 3.0, 9.0]).reshape(6, 1, 1, 1)
    out = tau_norm_classifier(w, 1.0, num_classes=2, extra=1).flatten()
    torch.testing.assert_close(out, torch.tensor([2.0, 2.0, 9.0, 2.0, 2.0, 9.0]))
    with pytest.raises(ValueError, match="not groups of 2 class rows"):
        tau_norm_classifier(torch.ones(5, 2), 1.0, num_classes=2, extra=1)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        tau_norm_classifier(torch.ones(3, 2), -1.0, num_classes=2, extra=1)
