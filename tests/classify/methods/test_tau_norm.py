"""Tests for cytolt.classify.methods.tau_norm: the normalised layer, the sweep on val, and the finished head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cytolt.classify.methods.tau_norm import (
    TAU_GRID,
    TAU_NORM,
    balanced_accuracy,
    build_tau_norm_head,
    sweep_tau,
    tau_norm_linear,
)
from tests.classify.methods import TinyCrops, tiny_context


def test_layer_limits_tau_zero_and_one_and_no_bias() -> None:
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.5]]))
    same = tau_norm_linear(linear, 0.0)
    assert same.bias is None
    torch.testing.assert_close(same.weight, linear.weight)
    unit = tau_norm_linear(linear, 1.0)
    torch.testing.assert_close(unit.weight, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    half = tau_norm_linear(linear, 0.5)  # ||w|| = 5 and 0.5 -> divided by sqrt(5) and sqrt(0.5)
    torch.testing.assert_close(half.weight, torch.tensor([[3 / 5**0.5, 4 / 5**0.5], [0.0, 0.5 / 0.5**0.5]]))
    assert torch.equal(linear.weight, torch.tensor([[3.0, 4.0], [0.0, 0.5]]))  # input layer unchanged


def test_grid_and_balanced_accuracy() -> None:
    assert TAU_GRID[0] == 0.0 and TAU_GRID[-1] == 2.0 and len(TAU_GRID) == 21
    # class 0: 2 of 2 right, class 1: 0 of 1, class 2 absent -> mean over the present classes = 0.5
    assert balanced_accuracy(torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1]), 3) == 0.5


def test_sweep_picks_the_tau_that_undoes_the_norm_bias() -> None:
    # Head class 0 has a 4x longer weight; at tau 0 the class-1 feature (0.4, 1) scores 4 * 0.4 = 1.6 for
    # class 0 against 1.0 for class 1, and (0.45, 1) 1.8 against 1.0: both go to the head class.
    weight = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    features = torch.tensor([[1.0, 0.0], [0.4, 1.0], [0.45, 1.0]])
    labels = torch.tensor([0, 1, 1])
    tau, scores = sweep_tau(features, labels, weight)
    assert scores[0.0] == 0.5  # both class-1 crops go to class 0
    # tau = 1 gives unit rows: 0.4 < 1 and 0.45 < 1 -> all right; the smallest such tau wins:
    # class 0's weight is 4^(1 - tau): 4^(1-tau) * 0.45 < 1  <=>  tau > 1 - log(1/0.45) / log(4) = 0.424
    assert tau == 0.5 and scores[tau] == 1.0
    assert all(scores[t] == 1.0 for t in TAU_GRID if t >= 0.5)
    with pytest.raises(ValueError, match="at least one tau"):
        sweep_tau(features, labels, weight, taus=())


def test_finish_sweeps_on_val_or_takes_the_given_tau() -> None:
    ctx = tiny_context(val=TinyCrops([0, 1, 2, 2], seed=3))
    head = TAU_NORM.finish(ctx)
    assert head.config["type"] == "tau_norm" and head.config["tau"] in TAU_GRID
    assert len(head.config["sweep_balanced_accuracy"]) == 21
    assert head.module.bias is None
    fixed = TAU_NORM.finish(tiny_context(options={"tau": 0.7}))
    assert fixed.config == {"type": "tau_norm", "tau": 0.7}
    torch.testing.assert_close(fixed.module.weight, tau_norm_linear(tiny_context().model.head, 0.7).weight)
    with pytest.raises(ValueError, match="needs a validation set"):
        TAU_NORM.finish(tiny_context())


def test_folder_builder_has_the_saved_shape() -> None:
    layer = build_tau_norm_head(4, 3, tau=1.0)
    assert layer.weight.shape == (3, 4) and layer.bias is None
