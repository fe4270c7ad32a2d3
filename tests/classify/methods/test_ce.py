"""Tests for cytolt.classify.methods.ce: the cross-entropy module and the sampler-only rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cytolt.classify.methods import ce


def test_cross_entropy_is_the_mean_softmax_cross_entropy() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    labels = torch.tensor([1, 0])
    # row 0: p_1 = 3 / 4; row 1: p_0 = 1 / 2 -> mean of -log(3/4) and -log(1/2)
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    loss = ce.CrossEntropyLoss()(logits, labels)
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    torch.manual_seed(0)
    z = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(ce.CrossEntropyLoss()(z, y), F.cross_entropy(z, y))
    ce.CrossEntropyLoss()(z, y).backward()
    # d/dz of the mean CE is (softmax - onehot) / N
    torch.testing.assert_close(z.grad, (torch.softmax(z.detach(), 1) - F.one_hot(y, 4)) / 5)


def test_the_sampler_rows_differ_only_in_their_sampler() -> None:
    rows = {spec.name: spec for spec in (ce.CE, ce.CLASS_BALANCED, ce.SQRT, ce.RFS)}
    assert {name: spec.sampler for name, spec in rows.items()} == {
        "ce": "instance",
        "class_balanced": "class_balanced",
        "sqrt": "sqrt",
        "rfs": "rfs",
    }
    for spec in rows.values():
        assert (
            spec.stage == 1 and spec.trains == "all" and spec.build_loss is None and spec.build_head is None
        )
