"""Tests for cytolt.classify.methods.livt: Bal-BCE over K classes, and the livt method's two stages end to end (tiny)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cytolt.classify.methods.livt import balanced_bce_classification_loss, pretrained_vit
from cytolt.classify.synth_crops import make_crop_set
from cytolt.classify.train import train_classifier
from cytolt.classify.vit import TinyViT

TINY_VIT = {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2}
TINY_DECODER = {"dim": 16, "depth": 1, "heads": 2}


def test_bal_bce_hand_worked() -> None:
    # Two classes, counts 3 and 1: pi = (0.75, 0.25), shifts log 3 and -log 3. Zero logits, label 0:
    # class 0 positive: BCE(log 3, 1) = log(1 + 1/3); class 1 negative: BCE(-log 3, 0) = log(1 + 1/3).
    # Summed over the 2 classes (LiVT's C * mean): 2 log(4/3).
    loss = balanced_bce_classification_loss(np.array([3, 1]))
    value = loss(torch.zeros(1, 2), torch.tensor([0]))
    assert value.item() == pytest.approx(2 * math.log(4 / 3))


def test_bal_bce_is_summed_shifted_bce_and_has_gradients() -> None:
    counts = np.array([50, 10, 2])
    prior = torch.tensor(counts / counts.sum(), dtype=torch.float64)
    logits = torch.randn(
        6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True
    )
    labels = torch.tensor([0, 1, 2, 0, 0, 1])
    loss = balanced_bce_classification_loss(counts).double()
    expected = F.binary_cross_entropy_with_logits(
        logits + torch.log(prior / (1 - prior)), F.one_hot(labels, 3).double(), reduction="sum"
    ) / len(labels)
    torch.testing.assert_close(loss(logits, labels), expected)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels), (logits,))


def test_bal_bce_needs_every_class() -> None:
    with pytest.raises(ValueError, match="each with a training crop"):
        balanced_bce_classification_loss(np.array([5, 0, 2]))
    with pytest.raises(ValueError, match=">= 2 classes"):
        balanced_bce_classification_loss(np.array([5]))


@pytest.fixture(scope="module")
def crops():
    return make_crop_set(size=32, head=12, imbalance=4)


def test_pretrained_vit_is_tinyvit_over_the_classes(crops) -> None:
    model, mgp = pretrained_vit(crops, epochs=1, batch_size=16, vit=TINY_VIT, decoder=TINY_DECODER)
    assert isinstance(model, TinyViT) and model.num_classes == len(crops.class_names)
    assert len(mgp.history) == 1 and np.isfinite(mgp.history[0]["loss"])
    for key, value in mgp.state.items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_livt_method_pretrains_then_fine_tunes(crops) -> None:
    options = {"mgp_epochs": 2, "vit": TINY_VIT, "decoder": TINY_DECODER}
    kwargs = {"method": "livt", "batch_size": 16, "progress": False}
    result = train_classifier(crops, crops, epochs=1, options=options, **kwargs)
    assert isinstance(result.model, TinyViT)
    assert [row["stage"] for row in result.history] == ["mgp", "mgp", 1]
    assert all(np.isfinite(row["loss"]) for row in result.history)
    assert result.head == {"type": "sigmoid_norm"} and result.method == "livt"
    assert result.val_report is not None and 0 <= result.val_report["balanced_accuracy"] <= 1
    # Fine-tuning starts from the MGP weights: with 0 fine-tuning epochs the backbone is MGP's (same seed).
    untouched = train_classifier(crops, epochs=0, options=options, **kwargs)
    model, _ = pretrained_vit(crops, epochs=2, batch_size=16, vit=TINY_VIT, decoder=TINY_DECODER)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(untouched.model.backbone.state_dict()[key], value), key
    # The sigmoid-normalised head: softmax of its output is sigmoid(z) / sum sigmoid(z).
    x = torch.rand(3, 3, 32, 32)
    z = untouched.model.head.linear(untouched.model.backbone(x))
    probs = torch.softmax(untouched.model(x), dim=1)
    torch.testing.assert_close(probs, torch.sigmoid(z) / torch.sigmoid(z).sum(1, keepdim=True))
    # Size names: "cpu" / "gpu" or a shape dict; anything else is an error naming the choices.
    with pytest.raises(ValueError, match="vit must be one of 'cpu', 'gpu'"):
        train_classifier(crops, epochs=0, options={**options, "vit": "huge"}, **kwargs)
