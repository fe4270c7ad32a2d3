"""Tests for cytolt.classify.methods.logit_adjust: the loss form and the post-hoc head."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.classify.methods.logit_adjust import (
    LOGIT_ADJUST,
    LOGIT_ADJUST_POSTHOC,
    LogitAdjustedHead,
    build_logit_adjust_head,
)
from cytolt.losses.logit_adjusted import LogitAdjustedLoss
from tests.classify.methods import tiny_context


def test_loss_uses_the_training_priors() -> None:
    ctx = tiny_context(labels=(0, 0, 0, 1))  # priors 3/4, 1/4, 0 -> class 2 empty: refused by the loss
    with pytest.raises(ValueError, match="positive"):
        LOGIT_ADJUST.build_loss(ctx)
    ctx = tiny_context(labels=(0, 0, 1, 2))  # priors 1/2, 1/4, 1/4
    loss = LOGIT_ADJUST.build_loss(ctx)
    assert isinstance(loss, LogitAdjustedLoss)
    torch.testing.assert_close(loss.class_prior, torch.tensor([0.5, 0.25, 0.25]))
    # z = 0: the adjusted logits are log pi, so the loss of a class-0 crop is -log(1/2)
    assert math.isclose(float(loss(torch.zeros(1, 3), torch.tensor([0]))), math.log(2.0), rel_tol=1e-6)


def test_posthoc_head_subtracts_tau_log_prior() -> None:
    ctx = tiny_context(labels=(0, 0, 0, 1, 1, 2, 2, 2))  # priors 3/8, 2/8, 3/8
    head = LOGIT_ADJUST_POSTHOC.finish(ctx)
    assert head.config == {"type": "logit_adjust", "tau": 1.0}
    x = torch.randn(4, 4)
    offset = torch.log(torch.tensor([3 / 8, 2 / 8, 3 / 8]))
    torch.testing.assert_close(head.module(x), ctx.model.head(x) - offset)
    # equal raw logits -> the rarer class wins
    flat = LogitAdjustedHead(torch.nn.Linear(4, 3), torch.tensor([0.5, 0.2, 0.3]))
    with torch.no_grad():
        flat.linear.weight.zero_()
        flat.linear.bias.zero_()
    assert int(flat(torch.randn(1, 4)).argmax()) == 1
    rebuilt = build_logit_adjust_head(4, 3, tau=1.0)
    rebuilt.load_state_dict(head.module.state_dict())
    torch.testing.assert_close(rebuilt(x), head.module(x))


def test_posthoc_errors() -> None:
    with pytest.raises(ValueError, match="every class needs a training crop"):
        LOGIT_ADJUST_POSTHOC.finish(tiny_context(labels=(0, 0, 1)))
    with pytest.raises(ValueError, match="2 priors for a classifier with 3 outputs"):
        LogitAdjustedHead(torch.nn.Linear(4, 3), torch.tensor([0.5, 0.5]))
    assert LOGIT_ADJUST_POSTHOC.finish(tiny_context(options={"tau": 0.5})).module.tau == 0.5
