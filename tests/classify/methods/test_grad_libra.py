"""Tests for cytolt.classify.methods.grad_libra: the BCE-based classification form and the normalised scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cytolt.classify.methods.grad_libra import (
    GRAD_LIBRA,
    GradLibraClassificationLoss,
    SigmoidNormHead,
    build_sigmoid_head,
)
from tests.classify.methods import tiny_context


def test_fresh_state_is_bce_summed_over_classes_per_crop() -> None:
    loss = GradLibraClassificationLoss(3)
    assert loss.focal_gamma == 0.0 and loss.focal_alpha is None
    loss.eval()  # eval: no statistic moves, fresh weights are 1 and hardness unknown (h = 1)
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    expected = F.binary_cross_entropy_with_logits(z, F.one_hot(y, 3).float(), reduction="sum") / 4
    torch.testing.assert_close(loss(z, y), expected)


def test_training_calls_accumulate_state_and_stay_finite() -> None:
    ctx = tiny_context()
    loss = GRAD_LIBRA.build_loss(ctx)
    loss.train()
    z = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    for _ in range(3):
        value = loss(z, y)
        value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    assert bool((loss.pos_grad > 0).all()) and bool((loss.neg_grad > 0).all())


def test_head_normalises_the_sigmoid_scores() -> None:
    ctx = tiny_context()
    head = GRAD_LIBRA.finish(ctx)
    assert isinstance(head.module, SigmoidNormHead) and head.config == {"type": "sigmoid_norm"}
    x = torch.randn(5, 4)
    s = torch.sigmoid(ctx.model.head(x))
    torch.testing.assert_close(torch.softmax(head.module(x), 1), s / s.sum(1, keepdim=True))
    rebuilt = build_sigmoid_head(4, 3)
    rebuilt.load_state_dict(head.module.state_dict())
    torch.testing.assert_close(rebuilt(x), head.module(x))
