"""Tests for cytolt.classify.mgp: patchify, masking ratio and determinism, targets, loss, pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.classify.mgp import (
    MaskedAutoencoder,
    masked_patch_loss,
    normalized_patch_targets,
    patchify,
    pretrain_mgp,
    random_masking,
    unpatchify,
)
from cytolt.classify.vit import TinyViT, ViTBackbone

TINY_VIT = {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2}
TINY_DECODER = {"dim": 32, "depth": 1, "heads": 2}


def _blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth coloured blobs on a plain background: structure a reconstruction can learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(3, size - 3, 2)
        r = rng.uniform(2, size / 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        colour = rng.uniform(0.2, 1.0, 3)
        out[i] = np.clip(255 * (0.9 - blob[..., None] * colour * 0.8), 0, 255).astype(np.uint8)
    return out


def test_patchify_hand_worked_and_round_trip() -> None:
    # A 1-channel 4 x 4 image in 2 x 2 patches: patch 1 (top right) holds pixels 2, 3, 6, 7.
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = patchify(image, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert patches[0, 2].tolist() == [8.0, 9.0, 12.0, 13.0]
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(unpatchify(patchify(x, 8), 8, 3), x)
    with pytest.raises(ValueError, match="divisible by 8"):
        patchify(torch.rand(1, 3, 12, 12), 8)


def test_masking_ratio_and_consistency() -> None:
    keep, mask, restore = random_masking(5, 16, 0.75, torch.Generator().manual_seed(0))
    # int(16 * 0.25) = 4 visible, 12 hidden, per crop.
    assert keep.shape == (5, 4)
    assert mask.sum(dim=1).tolist() == [12.0] * 5
    for i in range(5):
        assert mask[i, keep[i]].sum() == 0  # the kept patches are the unmasked ones
        assert sorted(restore[i].tolist()) == list(range(16))
    # MAE's rounding: int(L * (1 - r)) visible; 49 patches at 0.75 keep 12.
    assert random_masking(1, 49, 0.75, torch.Generator().manual_seed(0))[0].shape == (1, 12)
    with pytest.raises(ValueError, match="no visible patch"):
        random_masking(1, 2, 0.75, torch.Generator())


def test_masking_is_deterministic_from_the_seed() -> None:
    a = random_masking(4, 16, 0.75, torch.Generator().manual_seed(3))
    b = random_masking(4, 16, 0.75, torch.Generator().manual_seed(3))
    c = random_masking(4, 16, 0.75, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])
    # Masks differ between the crops of a batch (per-crop shuffling).
    assert not torch.equal(a[1][0], a[1][1])


def test_targets_are_normalised_per_patch() -> None:
    patches = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]])
    target = normalized_patch_targets(patches)
    # Patch 0: mean 2.5, unbiased var 5/3 -> (x - 2.5) / sqrt(5/3 + 1e-6). A flat patch maps to zeros.
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / (5 / 3 + 1e-6) ** 0.5
    torch.testing.assert_close(target[0, 0], expected)
    torch.testing.assert_close(target[0, 1], torch.zeros(4))
    # Invariant to a patch's brightness and contrast.
    torch.testing.assert_close(
        normalized_patch_targets(3 * patches[:, :1] + 7), target[:, :1], atol=1e-5, rtol=0
    )


def test_loss_counts_only_hidden_patches() -> None:
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # Hidden patches 0 and 1: per-patch MSE 1 and 4 -> mean 2.5; the visible patch's error is ignored.
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(2.5)


def test_gradient_reaches_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(
        ViTBackbone(image_size=16, **TINY_VIT), decoder_dim=16, decoder_depth=1, decoder_heads=2
    )
    loss = model.loss(torch.rand(3, 3, 16, 16), torch.Generator().manual_seed(0))
    loss.backward()
    for name in ("encoder.patch_embed.weight", "encoder.blocks.0.attn.qkv.weight", "decoder.mask_token"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    # Classification-only parameters get no gradient from MGP.
    assert model.encoder.fc_norm.weight.grad is None


def test_pretraining_loss_decreases_and_plugs_into_tinyvit() -> None:
    images = _blobs(32, size=32)  # 16 patches of 8 px, 4 visible
    result = pretrain_mgp(
        images, epochs=20, batch_size=16, lr=3e-3, seed=0, vit=TINY_VIT, decoder=TINY_DECODER
    )
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    # Predicting every normalised target as 0 (a patch's mean) scores (P - 1) / P ~ 1: the model beats it.
    assert np.mean(losses[-3:]) < 0.8, losses
    assert result.config["vit"]["image_size"] == 32 and result.config["mask_ratio"] == 0.75
    # The measured input normalisation travels with the weights.
    pixels = images.astype(np.float64) / 255
    np.testing.assert_allclose(result.backbone.mean.flatten().numpy(), pixels.mean(axis=(0, 1, 2)), rtol=1e-4)
    model = TinyViT(4, backbone=ViTBackbone(image_size=32, **TINY_VIT))
    model.backbone.load_state_dict(result.state)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model.features(x), result.backbone(x))


def test_pretraining_is_deterministic_and_leaves_the_global_rng() -> None:
    images = _blobs(8)
    kwargs = {"epochs": 2, "batch_size": 4, "vit": TINY_VIT, "decoder": TINY_DECODER}
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = pretrain_mgp(images, seed=5, **kwargs)
    assert torch.rand(1).item() == before.item()  # the global RNG did not move
    b = pretrain_mgp(images, seed=5, **kwargs)
    c = pretrain_mgp(images, seed=6, **kwargs)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    for key, value in a.state.items():
        assert torch.equal(value, b.state[key]), key
    assert not torch.equal(a.state["patch_embed.weight"], c.state["patch_embed.weight"])


def test_pretraining_errors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        pretrain_mgp(np.zeros((4, 16, 16, 3), np.float32), epochs=1)
    with pytest.raises(ValueError, match="at least 2"):
        pretrain_mgp(np.zeros((1, 16, 16, 3), np.uint8), epochs=1)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        pretrain_mgp(np.zeros((4, 12, 12, 3), np.uint8), epochs=1, vit=TINY_VIT)
