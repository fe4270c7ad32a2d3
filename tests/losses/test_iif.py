"""Tests for cytolt.losses.iif: the variants on hand-worked counts, their limits, the classifier wrapper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cytolt.losses.iif import IIF_VARIANTS, IIFClassifier, class_axis_scale, iif_logits, iif_weights

# Three classes in 100 training images: in 1, 10 and 50 of them.
COUNTS = [1, 10, 50]
N = 100


def test_variants_on_hand_worked_counts() -> None:
    # raw log(N/n): log 100 = 4.60517, log 10 = 2.30259, log 2 = 0.69315
    # smooth log((N+1)/(n+1)) + 1: log(101/2) + 1 = 4.92197, log(101/11) + 1 = 3.21729, log(101/51) + 1 = 1.68333
    # prob log((N-n)/n): log 99 = 4.59512, log 9 = 2.19722, log 1 = 0
    expected = {
        "raw": [math.log(100), math.log(10), math.log(2)],
        "smooth": [math.log(101 / 2) + 1, math.log(101 / 11) + 1, math.log(101 / 51) + 1],
        "base2": [math.log2(100), math.log2(10), 1.0],
        "base10": [2.0, 1.0, math.log10(2)],
        "normit": [2.3263478740, 1.2815515655],  # -Phi^-1(0.01), -Phi^-1(0.1); f = 1/2 gives 0 (refused)
        "gombit": [-math.log(-math.log(1 - f)) for f in (0.01, 0.1, 0.5)],  # 4.60015, 2.25037, 0.36651
    }
    for variant, values in expected.items():
        counts = COUNTS[: len(values)]
        torch.testing.assert_close(
            iif_weights(counts, N, variant=variant), torch.tensor(values, dtype=torch.float32), msg=variant
        )
    torch.testing.assert_close(
        iif_weights([1, 10], N, variant="prob"), torch.tensor([math.log(99), math.log(9)])
    )


def test_authors_table_row() -> None:
    # LVIS v1 train: 100,170 images, category 1 in 64 of them; the authors' table gives raw 7.355741, smooth
    # 8.340247, prob 7.355102, base2 10.612091, base10 3.194558, normit 3.220913, gombit 7.355421.
    row = {"raw": 7.355741, "smooth": 8.340247, "prob": 7.355102, "base2": 10.612091, "base10": 3.194558}
    row |= {"normit": 3.220913, "gombit": 7.355421}
    assert set(row) == set(IIF_VARIANTS)
    for variant, value in row.items():
        assert iif_weights([64], 100_170, variant=variant).item() == pytest.approx(value, abs=2e-5), variant


def test_class_in_every_image_keeps_a_nonzero_logit_with_smooth() -> None:
    # n = N: raw log 1 = 0 would zero the class's logit forever; smooth gives log(1) + 1 = 1 (the logit unscaled).
    assert iif_weights([N], N, variant="smooth").item() == pytest.approx(1.0)
    torch.testing.assert_close(
        iif_logits(torch.tensor([[2.5, -1.0]]), iif_weights([N, 10], N, variant="smooth")),
        torch.tensor([[2.5, -1.0 * (math.log(101 / 11) + 1)]]),
    )
    for variant in ("raw", "prob", "base2", "base10", "normit", "gombit"):
        with pytest.raises(ValueError, match=r"classes 0 \(count 100\).*variant='smooth'"):
            iif_weights([N, 10], N, variant=variant)


def test_smooth_is_at_least_one_and_finite_for_unseen_classes() -> None:
    # n = 0: smooth log(N + 1) + 1 = 5.61512; every other variant is infinite there (refused).
    iif = iif_weights([0, 1, 37, 99, 100], N, variant="smooth")
    assert iif[0].item() == pytest.approx(math.log(101) + 1) and bool((iif >= 1).all())
    assert bool((iif[:-1] > iif[1:]).all())  # rarer classes get larger factors
    with pytest.raises(ValueError, match=r"classes 0 \(count 0\)"):
        iif_weights([0, 5], N)


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="variant must be one of 'raw', 'smooth'"):
        iif_weights(COUNTS, N, variant="idf")
    with pytest.raises(ValueError, match=r"counts must lie in \[0, total\]"):
        iif_weights([1, 101], N)
    with pytest.raises(ValueError, match="counts is empty"):
        iif_weights([], N)
    with pytest.raises(ValueError, match="finite and positive"):
        IIFClassifier(torch.nn.Linear(2, 2), [1.0, 0.0])


def test_wrapper_scales_a_linear_softmax_head_and_keeps_background() -> None:
    torch.manual_seed(0)
    iif = iif_weights(COUNTS, N, variant="smooth")
    linear = torch.nn.Linear(5, 4)  # 3 classes + background
    head = IIFClassifier(linear, iif, extra=1)
    x = torch.randn(6, 5)
    out = head(x)
    torch.testing.assert_close(out, linear(x) * torch.cat([iif, torch.ones(1)]))
    torch.testing.assert_close(out[:, 3], linear(x)[:, 3])  # background factor 1
    assert set(head.state_dict()) == {"classifier.weight", "classifier.bias", "iif"}


def test_wrapper_scales_each_anchor_group_of_a_conv_head() -> None:
    # A dense head's conv has R (C + extra) channels, class fastest: factors repeat per anchor.
    torch.manual_seed(1)
    iif = torch.tensor([2.0, 3.0])
    conv = torch.nn.Conv2d(4, 3 * 3, 1)  # R = 3 anchors, C = 2, softmax background
    out = IIFClassifier(conv, iif, extra=1)(x := torch.randn(2, 4, 5, 5))
    scale = torch.tensor([2.0, 3.0, 1.0] * 3).reshape(1, 9, 1, 1)
    torch.testing.assert_close(out, conv(x) * scale)
    assert class_axis_scale(iif, 6, 2).flatten().tolist() == [2.0, 3.0] * 3  # sigmoid: no extra column
    with pytest.raises(ValueError, match="groups of 2 classes"):
        class_axis_scale(iif, 7, 2)


def test_gradient_is_the_scaled_one_and_train_equals_eval() -> None:
    # d CE(iif * z) / dz = iif * (softmax(iif z) - y): gradcheck in float64 and the closed form.
    torch.manual_seed(2)
    iif = torch.tensor([4.0, 2.0, 1.5, 1.0], dtype=torch.float64)
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    assert torch.autograd.gradcheck(
        lambda t: F.cross_entropy(iif_logits(t, iif), labels, reduction="sum"), (z,)
    )
    (grad,) = torch.autograd.grad(F.cross_entropy(iif_logits(z, iif), labels, reduction="sum"), z)
    expected = (torch.softmax(z.detach() * iif, 1) - F.one_hot(labels, 4)) * iif
    torch.testing.assert_close(grad, expected)
    head = IIFClassifier(torch.nn.Linear(3, 4), iif[:3], extra=1)
    x = torch.randn(2, 3)
    torch.testing.assert_close(head.train()(x), head.eval()(x))  # the same factors at test time


def test_iif_stretches_rare_margins() -> None:
    # Equal raw logits: the rare class's scaled logit wins after the softmax.
    iif = iif_weights(COUNTS, N, variant="raw")
    probs = torch.softmax(iif_logits(torch.ones(1, 3), iif), 1)[0]
    assert probs[0] > probs[1] > probs[2]


def test_forward_never_reads_tensor_values_on_the_host() -> None:
    head = IIFClassifier(torch.nn.Linear(3, 4), [2.0, 1.5, 1.2], extra=1).to("meta")
    out = head(torch.empty(6, 3, device="meta"))
    assert out.shape == (6, 4)
