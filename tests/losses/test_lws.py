"""Tests for cytolt.losses.lws: per-class scales on a frozen classifier, anchor-group layout, gradients reach only
the scales, and a first-stage checkpoint of the bare layer loads into the wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cytolt.losses.lws import LWSClassifier, lws_logits


def test_scales_multiply_each_class_column() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    scale = torch.tensor([2.0, 0.5, 1.0])
    torch.testing.assert_close(lws_logits(logits, scale), torch.tensor([[2.0, 1.0, 3.0], [-2.0, 0.25, 4.0]]))
    # A dense head's (N, R K, H, W) output: the K scales repeat for each of the R = 2 anchors.
    dense = torch.ones(1, 6, 2, 2)
    out = lws_logits(dense, scale)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([2.0, 0.5, 1.0, 2.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="not groups of 3"):
        lws_logits(torch.ones(2, 4), scale)


def test_wrapper_starts_as_the_layer_and_trains_only_its_scales() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    lws = LWSClassifier(layer, 3)
    x = torch.randn(5, 4)
    torch.testing.assert_close(lws(x), layer(x))  # scales start at 1
    assert [n for n, p in lws.named_parameters() if p.requires_grad] == ["scale"]
    lws(x)[:, 1].sum().backward()
    # d/ds_c sum_i s_1 z_i1 = sum_i z_i1 for c = 1, 0 elsewhere.
    torch.testing.assert_close(lws.scale.grad, torch.tensor([0.0, float(layer(x)[:, 1].sum()), 0.0]))
    assert layer.weight.grad is None
    assert LWSClassifier(nn.Linear(4, 3), 3, freeze=False).classifier.weight.requires_grad
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        LWSClassifier(layer, 0)


def test_a_bare_layer_checkpoint_loads_into_the_wrapper() -> None:
    stage_one = nn.Sequential(nn.Linear(4, 3))
    stage_two = nn.Sequential(LWSClassifier(nn.Linear(4, 3), 3))
    missing, unexpected = stage_two.load_state_dict(stage_one.state_dict(), strict=False)
    assert missing == ["0.scale"] and unexpected == []
    torch.testing.assert_close(stage_two[0].classifier.weight, stage_one[0].weight)
    # Its own state dict round-trips unchanged (scale included).
    stage_two[0].scale.data.fill_(0.5)
    again = nn.Sequential(LWSClassifier(nn.Linear(4, 3), 3))
    again.load_state_dict(stage_two.state_dict())
    assert torch.equal(again[0].scale, torch.full((3,), 0.5))
