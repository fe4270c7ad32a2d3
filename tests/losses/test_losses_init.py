"""Tests for cytolt.losses (the package): the name table, the import boundary, and that no loss syncs the host."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import cytolt.losses as losses
from cytolt.losses import LOSSES, get_loss

C = 3
# name -> (constructor kwargs, number of logit columns) for a 3-category problem
CASES: dict[str, tuple[dict, int]] = {
    "FocalLoss": ({}, C),
    "EqualizedFocalLoss": ({"num_classes": C}, C),
    "EQLLoss": ({"image_freq": [0.5, 0.0005, 0.1]}, C),
    "EQLv2Loss": ({"num_classes": C}, C),
    "GradLibraLoss": ({"num_classes": C}, C),
    "SeesawLoss": ({"num_classes": C}, C + 2),
    "CDBLoss": ({"num_classes": C}, C + 1),
    "FederatedLoss": ({"image_count": [10, 5, 1], "num_sample_classes": 2}, C),
    "BalancedBCELoss": ({"class_prior": [0.1, 0.05, 0.01]}, C),
    "LogitAdjustedLoss": ({"class_prior": [0.6, 0.3, 0.1]}, C + 1),
    "DistributionBalancedLoss": ({"class_freq": [10, 5, 1], "num_samples": 12}, C),
}


def test_table_names_match_classes_and_cases() -> None:
    assert set(CASES) == set(LOSSES)
    for name, cls in LOSSES.items():
        assert cls.__name__ == name
        assert getattr(losses, name) is cls
    with pytest.raises(ValueError, match="'FocalLoss', 'EqualizedFocalLoss'"):
        get_loss("GHMC")
    assert get_loss("GradLibraLoss") is losses.GradLibraLoss


def test_import_does_not_pull_in_frameworks() -> None:
    code = "import sys, cytolt.losses; print(sorted(m for m in ('mmdet', 'mmengine', 'mmcv', 'napari') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_backward_never_read_tensor_values_on_the_host(name: str) -> None:
    # Meta tensors carry shapes only: .item(), bool(tensor), .tolist() or a data-dependent index raise on them.
    # A training step that runs on meta therefore never waits for the GPU.
    kwargs, k = CASES[name]
    loss_fn = LOSSES[name](**kwargs).to("meta").train()
    logits = torch.empty(6, k, device="meta", requires_grad=True)
    labels = torch.empty(6, dtype=torch.long, device="meta")
    weight = torch.empty(6, device="meta")
    avg_factor = torch.empty((), device="meta")
    loss = loss_fn(logits, labels, weight, avg_factor=avg_factor)
    loss.backward()
    assert loss.shape == () and logits.grad.shape == logits.shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_loss_trains_on_cpu_and_keeps_buffers_in_state_dict(name: str) -> None:
    kwargs, k = CASES[name]
    loss_fn = LOSSES[name](**kwargs)
    torch.manual_seed(0)
    logits = torch.randn(8, k, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 3, 0, 3, 3])
    loss = loss_fn(logits, labels, torch.ones(8), avg_factor=3.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert set(loss_fn.state_dict()) == {n for n, _ in loss_fn.named_buffers()}


@pytest.mark.parametrize("name", sorted(set(CASES) - {"SeesawLoss"}))  # Seesaw averages its terms apart
def test_reductions_weights_and_avg_factor_agree(name: str) -> None:
    kwargs, k = CASES[name]
    loss_fn = LOSSES[name](**kwargs).eval()  # eval: stateful losses keep their state between the calls
    torch.manual_seed(1)
    logits = torch.randn(8, k)
    labels = torch.tensor([0, 1, 2, 3, 3, 0, 3, 3])
    weight = torch.rand(8)
    none = loss_fn(logits, labels, reduction_override="none")
    assert none.shape in {(8,), (8, k)}
    torch.testing.assert_close(loss_fn(logits, labels, reduction_override="sum"), none.sum())
    torch.testing.assert_close(loss_fn(logits, labels), none.mean())
    weighted = none * (weight if none.dim() == 1 else weight[:, None])
    torch.testing.assert_close(loss_fn(logits, labels, weight, avg_factor=2.5), weighted.sum() / 2.5)
