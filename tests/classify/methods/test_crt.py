"""Tests for cytolt.classify.methods.crt: a fresh linear head on the frozen stage-1 representation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cytolt.classify.methods.crt import CRT
from tests.classify.methods import tiny_context


def test_the_head_is_re_initialised_with_the_same_shape() -> None:
    ctx = tiny_context()
    old = ctx.model.head
    with torch.no_grad():
        old.weight.fill_(5.0)
    head = CRT.build_head(ctx)
    assert isinstance(head.module, nn.Linear) and head.module is not old
    assert head.module.weight.shape == old.weight.shape and head.module.bias is not None
    assert not torch.equal(head.module.weight, old.weight)
    assert head.config == {"type": "linear"}
    assert bool((old.weight == 5.0).all())  # the stage-1 layer itself is untouched


def test_spec_is_a_class_balanced_second_stage_on_the_head() -> None:
    assert (CRT.stage, CRT.sampler, CRT.trains) == (2, "class_balanced", "head")


def test_a_non_linear_stage_one_head_is_refused() -> None:
    ctx = tiny_context()
    ctx.model.head = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="works on a linear classifier"):
        CRT.build_head(ctx)
