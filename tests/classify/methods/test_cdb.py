"""Tests for cytolt.classify.methods.cdb: CDB-W weights from the loop's held-out difficulty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.classify.methods.cdb import CDB
from cytolt.losses.cdb import CDBLoss, cdb_weights
from cytolt.samplers import CDBSampler
from tests.classify.methods import tiny_context


def test_loss_starts_uniform_and_takes_the_measured_difficulty() -> None:
    ctx = tiny_context()
    ctx.loss = CDB.build_loss(ctx)
    assert isinstance(ctx.loss, CDBLoss) and torch.equal(ctx.loss.class_weights, torch.ones(3))
    ctx.difficulty = np.array([0.1, 0.5, 1.0])
    row = CDB.epoch_end(ctx, 0)
    expected = cdb_weights(torch.tensor([0.1, 0.5, 1.0]), "dynamic")
    torch.testing.assert_close(ctx.loss.class_weights, expected)
    assert row["cdb_weights"] == [round(float(w), 4) for w in expected]
    # softmax CDB-W over K classes: w[y] * CE, plain mean
    z, y = torch.randn(3, 3), torch.tensor([0, 1, 2])
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(ctx.loss(z, y), (expected[y] * ce).mean())
    assert CDB.sampler == "cdb"


def test_a_fixed_tau_and_the_missing_measurement() -> None:
    ctx = tiny_context(options={"cdb_tau": 1.0})
    ctx.loss = CDB.build_loss(ctx)
    ctx.difficulty = np.array([0.0, 0.5, 1.0])
    CDB.epoch_end(ctx, 0)
    torch.testing.assert_close(ctx.loss.class_weights, torch.tensor([0.0, 1.0, 2.0]))  # d / mean(d)
    ctx.difficulty = None
    with pytest.raises(RuntimeError, match="measured no difficulty"):
        CDB.epoch_end(ctx, 1)
    # with the CDB sampler but no measurement yet (cdb_every > 1) the weights stay as they are
    ctx.sampler = CDBSampler([{0}, {1}, {2}], num_classes=3)
    before = ctx.loss.class_weights.clone()
    assert CDB.epoch_end(ctx, 0) == {} and torch.equal(ctx.loss.class_weights, before)
