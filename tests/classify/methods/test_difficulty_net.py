"""Tests for cytolt.classify.methods.difficulty_net: relative difficulty, weights, the driver loss, the exact
one-step hypergradient, the meta-step on a toy problem, and the comparison with CDB-W's fixed rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cytolt import samplers
from cytolt.classify.methods.difficulty_net import (
    HELD_OUT,
    DifficultyNet,
    DifficultyNetLoss,
    DifficultyNetWeighter,
    difficulty_weights,
    driver_loss,
    meta_gradient,
    relative_difficulty,
)
from cytolt.classify.methods.spec import eval_logits, per_class_recall
from cytolt.classify.synth_crops import make_crop_set
from cytolt.classify.train import train_classifier
from cytolt.losses.cdb import cdb_cross_entropy, cdb_weights

ACC = torch.tensor([0.9, 0.5, 0.1])


def test_relative_difficulty_and_weights_hand_worked() -> None:
    # sum a = 1.5: r = 1 - (0.6, 1/3, 1/15) = (0.4, 2/3, 14/15); sum r = 2 -> w = 3 r / 2 = (0.6, 1.0, 1.4)
    r = relative_difficulty(ACC)
    torch.testing.assert_close(r, torch.tensor([0.4, 2 / 3, 14 / 15]))
    torch.testing.assert_close(difficulty_weights(r), torch.tensor([0.6, 1.0, 1.4]))
    # Limits: nothing measured yet (all 0) -> all 1; equal accuracies -> 1 - 1/K, uniform weights.
    torch.testing.assert_close(relative_difficulty(torch.zeros(4)), torch.ones(4))
    torch.testing.assert_close(relative_difficulty(torch.full((4,), 0.7)), torch.full((4,), 0.75))
    torch.testing.assert_close(difficulty_weights(relative_difficulty(torch.full((4,), 0.7))), torch.ones(4))
    # Batched over a leading dim.
    assert relative_difficulty(torch.rand(5, 3)).shape == (5, 3)


def test_driver_loss_hand_worked_and_gradient() -> None:
    d = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    # (0.1^2 + (1/6)^2 + (13/30)^2) / 3
    expected = (0.1**2 + (1 / 6) ** 2 + (13 / 30) ** 2) / 3
    acc = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    assert abs(float(driver_loss(d.detach(), acc)) - expected) < 1e-12
    assert torch.autograd.gradcheck(lambda x: driver_loss(x, acc), (d,))
    assert torch.autograd.gradcheck(
        difficulty_weights, (torch.rand(4, dtype=torch.float64, requires_grad=True),)
    )


def test_net_shape_start_and_seed() -> None:
    net = DifficultyNet(3)
    d = net(torch.rand(7, 3))
    assert d.shape == (7, 3) and bool(((d > 0) & (d < 1)).all())
    # No biases: accuracies all 0 give sigmoid(0) = 1/2 for every class, i.e. uniform weights (authors' start).
    torch.testing.assert_close(net(torch.zeros(3)), torch.full((3,), 0.5))
    a, b = DifficultyNetWeighter(3, seed=5), DifficultyNetWeighter(3, seed=5)
    torch.testing.assert_close(a.weights(), torch.ones(3))
    assert a.set_accuracy(ACC).shape == (3,)
    torch.testing.assert_close(a.weights(), b.set_accuracy(ACC))  # same seed, same net
    assert not torch.equal(DifficultyNetWeighter(3, seed=6).set_accuracy(ACC), a.weights())
    double = DifficultyNet(3).double()
    assert torch.autograd.gradcheck(double, (torch.rand(3, dtype=torch.float64, requires_grad=True),))
    with pytest.raises(ValueError, match="must end in 3"):
        net(torch.zeros(4))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        a.set_accuracy([0.5, 1.2, 0.0])
    with pytest.raises(ValueError, match="shape"):
        a.set_accuracy([0.5, 0.5])


def test_driver_loss_alone_fits_the_relative_difficulty_and_compares_with_cdb() -> None:
    weighter = DifficultyNetWeighter(3, lr=1e-2, seed=0)
    weighter.set_accuracy(ACC)
    model = nn.Linear(2, 3)
    batch = (torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    for _ in range(
        300
    ):  # inner_lr = 0: theta' = theta, no hypergradient; the driver loss alone trains the net
        weighter.meta_step(model, batch, batch, inner_lr=0.0)
    learned = weighter.weights()
    torch.testing.assert_close(learned, torch.tensor([0.6, 1.0, 1.4]), atol=0.02, rtol=0)
    # CDB-W's fixed rule on the same accuracies (tau = 1): d = 1 - a = (0.1, 0.5, 0.9) -> (0.2, 1.0, 1.8).
    fixed = cdb_weights(1 - ACC, 1.0)
    torch.testing.assert_close(fixed, torch.tensor([0.2, 1.0, 1.8]))
    # Both give the harder class the larger weight; the driver target is the milder spread (0.6..1.4 vs 0.2..1.8) ...
    assert bool((learned.diff() > 0).all()) and bool((fixed.diff() > 0).all())
    assert float(learned.max() / learned.min()) < float(fixed.max() / fixed.min())
    # ... and flattens as K grows: 20 classes, accuracies 0.05..1.0 -> relative weights within 0.92..1.06.
    many = torch.linspace(0.05, 1.0, 20)
    rel = difficulty_weights(relative_difficulty(many))
    assert (
        float(rel.max() - rel.min())
        < 0.15
        < float(cdb_weights(1 - many, 1.0).max() - cdb_weights(1 - many, 1.0).min())
    )


def _toy() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A 2-class linear classifier biased to class 0; class 1 is rare in training and misclassified held out."""
    torch.manual_seed(0)
    model = nn.Linear(2, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.copy_(torch.tensor([1.0, -1.0]))
    x_train = torch.cat(
        [
            torch.tensor([1.0, 0.0]) + 0.1 * torch.randn(16, 2),
            torch.tensor([0.0, 1.0]) + 0.1 * torch.randn(4, 2),
        ]
    )
    y_train = torch.tensor([0] * 16 + [1] * 4)
    x_held = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])  # the class-1 ones score class 0
    y_held = torch.tensor([0, 0, 1, 1])
    return model, (x_train.double(), y_train), (x_held.double(), y_held)


def test_meta_gradient_matches_finite_differences_and_leaves_the_model() -> None:
    model, train, held = _toy()
    w = torch.tensor([1.2, 0.8], dtype=torch.float64)
    grad, loss = meta_gradient(model, w, train, held, inner_lr=0.5)
    eps = 1e-6
    for c in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[c] = eps
        up = meta_gradient(model, w + e, train, held, inner_lr=0.5)[1]
        down = meta_gradient(model, w - e, train, held, inner_lr=0.5)[1]
        assert abs(float((up - down) / (2 * eps)) - float(grad[c])) < 1e-7
    # Up-weighting the rare, misclassified class lowers the held-out loss; up-weighting the head class raises it.
    assert float(grad[1]) < 0 < float(grad[0])
    # inner_lr = 0: no step, no dependence on w; the loss is the plain held-out CE.
    zero, plain = meta_gradient(model, w, train, held, inner_lr=0.0)
    torch.testing.assert_close(zero, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(plain, nn.functional.cross_entropy(model(held[0]), held[1]))
    # With batch norm in training mode: parameters, gradients and running statistics are untouched.
    bn_model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().train()
    before = {k: v.clone() for k, v in bn_model.state_dict().items()}
    grad_bn, _ = meta_gradient(bn_model, w, train, held, inner_lr=0.5)
    assert bool(torch.isfinite(grad_bn).all())
    assert all(torch.equal(before[k], v) for k, v in bn_model.state_dict().items())
    assert all(p.grad is None for p in bn_model.parameters())
    # Only the last layer takes the virtual step: the hypergradient differs, and a prefix matching nothing fails.
    head_only, _ = meta_gradient(bn_model, w, train, held, inner_lr=0.5, prefixes=("3.",))
    assert not torch.allclose(head_only, grad_bn)
    with pytest.raises(ValueError, match="no trainable parameter"):
        meta_gradient(bn_model, w, train, held, prefixes=("head.",))


def test_meta_steps_move_weight_to_the_harder_class() -> None:
    model, train, held = _toy()
    weighter = DifficultyNetWeighter(2, lr=1e-2, driver_weight=0.0, seed=0).double()
    start = weighter.set_accuracy([0.9, 0.2])
    for _ in range(20):
        out = weighter.meta_step(model, train, held, inner_lr=0.5)
    end = weighter.weights()
    assert set(out) == {"meta_loss", "driver_loss"}
    # The meta-gradient alone (no driver loss) shifts weight to class 1, the rare class misclassified held out.
    assert float(end[1] - end[0]) > float(start[1] - start[0]) + 0.05
    torch.testing.assert_close(end.mean(), torch.tensor(1.0, dtype=torch.float64))
    # The classifier itself is not trained by meta-steps.
    torch.testing.assert_close(model.weight, torch.eye(2, dtype=torch.float64))


def test_loss_uses_the_current_weights() -> None:
    weighter = DifficultyNetWeighter(3, seed=1)
    loss = DifficultyNetLoss(weighter)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    torch.testing.assert_close(loss(logits, labels), nn.functional.cross_entropy(logits, labels))  # weights 1
    w = weighter.set_accuracy(ACC)
    torch.testing.assert_close(loss(logits, labels), cdb_cross_entropy(logits, labels, w))
    assert set(loss.state_dict()) == {"weighter.accuracy", "weighter.class_weights"} | {
        f"weighter.net.layers.{i}.weight" for i in (0, 2, 4)
    }


# ----------------------------------------------------------------------------------------------- in the training loop


def test_difficulty_net_method_in_the_loop() -> None:
    train = make_crop_set(size=32, head=12, imbalance=4)
    val = make_crop_set(size=32, head=2, imbalance=1, seed=1)
    k = len(train.class_names)
    options = {"meta_steps": 2, "meta_batch": 16}
    result = train_classifier(
        train, val, method="difficulty_net", epochs=2, width=4, progress=False, options=options
    )
    assert result.head == {"type": "linear"}
    for row in result.history:
        assert row["dn_split"] == "held_out" and len(row["dn_accuracy"]) == k
        assert abs(sum(row["dn_weights"]) / k - 1) < 1e-3 and np.isfinite(row["dn_meta_loss"])
    # The accuracies fed to the net are the per-class recall on the held-out part of train after the epoch (the
    # last: the final model); that part is never trained on.
    held = samplers.held_out_indices([{int(y)} for y in train.labels], HELD_OUT, seed=0)
    assert 0 < len(held) < len(train)
    part = train.subset(held)
    recall = per_class_recall(eval_logits(result.model, part).argmax(1), torch.as_tensor(part.labels), k)
    assert result.history[-1]["dn_accuracy"] == [round(float(a), 4) for a in recall]
    assert result.history[-1]["samples"] <= len(train) - len(held)
    # Same seed, same run (the meta batches are drawn from a seeded generator); val plays no part in training.
    again = train_classifier(
        train, None, method="difficulty_net", epochs=2, width=4, progress=False, options=options
    )
    assert again.history[-1]["dn_weights"] == result.history[-1]["dn_weights"]
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value, rtol=0, atol=0)
