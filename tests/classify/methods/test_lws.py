"""Tests for cytolt.classify.methods.lws: scales on a copy of the frozen stage-1 classifier."""

from __future__ import annotations

import torch

from cytolt.classify.methods.lws import LWS, build_lws_head
from cytolt.losses.lws import LWSClassifier
from tests.classify.methods import tiny_context


def test_head_starts_as_the_stage_one_classifier_and_trains_only_its_scales() -> None:
    ctx = tiny_context()
    head = LWS.build_head(ctx)
    assert isinstance(head.module, LWSClassifier) and head.config == {"type": "lws"}
    x = torch.randn(5, 4)
    torch.testing.assert_close(head.module(x), ctx.model.head(x))
    assert [n for n, p in head.module.named_parameters() if p.requires_grad] == ["scale"]
    assert ctx.model.head.weight.requires_grad  # a copy was frozen, not the stage-1 layer
    head.module(x)[:, 2].sum().backward()
    # d/ds_c sum_i s_2 z_i2: the column sum of the raw logits for c = 2, 0 for the others
    expected = torch.zeros(3)
    expected[2] = ctx.model.head(x)[:, 2].sum().detach()
    torch.testing.assert_close(head.module.scale.grad, expected)


def test_spec_and_folder_builder() -> None:
    assert (LWS.stage, LWS.sampler, LWS.trains, LWS.weight_decay) == (2, "class_balanced", "head", 0.0)
    ctx = tiny_context()
    trained = LWS.build_head(ctx).module
    with torch.no_grad():
        trained.scale.copy_(torch.tensor([0.5, 1.0, 2.0]))
    rebuilt = build_lws_head(4, 3)
    rebuilt.load_state_dict(trained.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(rebuilt(x), trained(x))
