"""Tests for cytolt.classify.methods.iif: the smooth factors of the crop counts on the linear classifier."""

from __future__ import annotations

import math

import pytest
import torch

from cytolt.classify.methods.iif import IIF, build_iif_head
from cytolt.losses.iif import IIFClassifier
from tests.classify.methods import tiny_context


def test_head_scales_logits_by_the_smooth_factors() -> None:
    ctx = tiny_context(labels=(0, 0, 0, 0, 0, 1, 1, 2))  # N = 8; n = 5, 2, 1
    head = IIF.build_head(ctx)
    assert isinstance(head.module, IIFClassifier) and head.config == {"type": "iif", "variant": "smooth"}
    expected = torch.tensor([math.log(9 / 6) + 1, math.log(9 / 3) + 1, math.log(9 / 2) + 1])
    torch.testing.assert_close(head.module.iif, expected)
    x = torch.randn(3, 4)
    torch.testing.assert_close(head.module(x), ctx.model.head(x) * expected)
    rebuilt = build_iif_head(4, 3, variant="smooth")
    rebuilt.load_state_dict(head.module.state_dict())
    torch.testing.assert_close(rebuilt(x), head.module(x))


def test_a_class_in_every_crop_keeps_a_factor_with_smooth_but_not_raw() -> None:
    ctx = tiny_context(labels=(0, 0, 0), num_classes=1)
    assert float(IIF.build_head(ctx).module.iif[0]) == pytest.approx(1.0)  # log(4/4) + 1
    with pytest.raises(ValueError, match="needs variant='smooth'"):
        IIF.build_head(tiny_context(labels=(0, 0, 0), num_classes=1, options={"iif_variant": "raw"}))
