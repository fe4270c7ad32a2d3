"""Tests for cytolt.classify.methods.distribution_balanced: the DB loss on one-hot crops and its spec."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cytolt.classify.methods import METHODS
from cytolt.classify.methods.distribution_balanced import DB
from cytolt.classify.methods.grad_libra import SigmoidNormHead
from cytolt.losses.distribution_balanced import distribution_balanced_loss
from tests.classify.methods import tiny_context


def test_registered_with_class_aware_sampling() -> None:
    assert METHODS["db"] is DB and DB.sampler == "class_balanced" and DB.stage == 1


def test_loss_is_db_on_one_hot_targets_with_the_training_counts() -> None:
    ctx = tiny_context()  # counts (4, 2, 1), 7 crops
    loss = DB.build_loss(ctx)
    z, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0])
    expected = distribution_balanced_loss(
        z, F.one_hot(y, 3).float(), class_freq=torch.tensor([4.0, 2.0, 1.0]), num_samples=7
    )
    torch.testing.assert_close(loss(z, y), expected)


def test_head_normalises_the_sigmoid_scores() -> None:
    ctx = tiny_context()
    head = DB.finish(ctx)
    assert isinstance(head.module, SigmoidNormHead) and head.config == {"type": "sigmoid_norm"}
    x = torch.randn(4, 4)
    s = torch.sigmoid(ctx.model.head(x))
    torch.testing.assert_close(torch.softmax(head.module(x), 1), s / s.sum(1, keepdim=True))
