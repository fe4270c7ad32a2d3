"""Tests for cytolt.classify.vit: shapes, the position embedding, the CellClassifier-like interface, loading."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from cytolt.classify.vit import VIT_SIZES, TinyViT, ViTBackbone, parameter_count, sincos_position_embedding

TINY = {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2}


def test_shapes_and_interface() -> None:
    torch.manual_seed(0)
    model = TinyViT(5, backbone=ViTBackbone(image_size=32, **TINY))
    x = torch.rand(3, 3, 32, 32)
    assert model.features(x).shape == (3, 16) and model.feature_dim == 16
    assert model(x).shape == (3, 5) and model.num_classes == 5
    assert model.backbone.num_patches == 16
    # The head is replaceable, as on CellClassifier.
    model.head = torch.nn.Linear(16, 2)
    assert model(x).shape == (3, 2)
    # encode keeps the class token plus the visible patches.
    keep = torch.tensor([[0, 5, 9], [1, 2, 3], [15, 14, 13]])
    assert model.backbone.encode(x, keep).shape == (3, 4, 16)
    assert model.backbone.encode(x).shape == (3, 17, 16)


def test_position_embedding_hand_worked() -> None:
    # dim 4: one frequency (w = 1); row r, col c -> [sin c, cos c, sin r, cos r]; row 0 is the class token (zeros).
    table = sincos_position_embedding(4, 2)
    assert table.shape == (5, 4)
    torch.testing.assert_close(table[0], torch.zeros(4))
    s1, c1 = math.sin(1.0), math.cos(1.0)
    expected = torch.tensor(
        [[0, 1, 0, 1], [s1, c1, 0, 1], [0, 1, s1, c1], [s1, c1, s1, c1]], dtype=torch.float32
    )
    torch.testing.assert_close(table[1:], expected)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(6, 2)


def test_patch_order_matters() -> None:
    # Position embeddings make the model see where a patch is: swapping two patches changes the features.
    torch.manual_seed(0)
    backbone = ViTBackbone(image_size=16, **TINY).eval()
    x = torch.rand(1, 3, 16, 16)
    swapped = x.clone()
    swapped[..., :8, :8], swapped[..., 8:, 8:] = x[..., 8:, 8:], x[..., :8, :8]
    assert not torch.allclose(backbone(x), backbone(swapped))


def test_input_normalisation_buffers() -> None:
    torch.manual_seed(0)
    backbone = ViTBackbone(image_size=16, **TINY)
    x = torch.rand(2, 3, 16, 16)
    before = backbone(x)
    backbone.set_normalization([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    assert not torch.allclose(before, backbone(x))
    assert (
        "mean" in backbone.state_dict() and "pos_embed" not in backbone.state_dict()
    )  # fixed: rebuilt, not saved
    with pytest.raises(ValueError, match="std > 0"):
        backbone.set_normalization([0.5] * 3, [0.0] * 3)


def test_gradients_reach_every_classification_parameter() -> None:
    torch.manual_seed(0)
    model = TinyViT(3, backbone=ViTBackbone(image_size=16, **TINY))
    model(torch.rand(4, 3, 16, 16)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # Only the MGP encoder's output norm is unused by classification (features pool, then fc_norm).
    assert missing == ["backbone.norm.weight", "backbone.norm.bias"]


def test_safetensors_round_trip(tmp_path) -> None:
    # The fixed position embedding is not saved; a fresh backbone of the same shape rebuilds it.
    torch.manual_seed(0)
    source = TinyViT(3, backbone=ViTBackbone(image_size=16, **TINY))
    path = tmp_path / "model.safetensors"
    save_file(source.state_dict(), str(path))
    target = TinyViT(3, backbone=ViTBackbone(image_size=16, **TINY))
    target.load_state_dict(load_file(str(path)), strict=True)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(target(x), source(x))
    wider = TinyViT(3, backbone=ViTBackbone(image_size=16, patch_size=8, dim=32, depth=1, heads=2))
    with pytest.raises(RuntimeError, match="size mismatch"):
        wider.load_state_dict(load_file(str(path)))


def test_sizes_and_errors() -> None:
    # The documented CPU size: patch 8, dim 64, depth 4, 4 heads, about 0.2 M parameters with a 5-class head.
    assert 0.15e6 < parameter_count(TinyViT(5, backbone=ViTBackbone(**VIT_SIZES["cpu"]))) < 0.25e6
    assert VIT_SIZES["gpu"]["dim"] == 192 and VIT_SIZES["gpu"]["depth"] == 12
    assert TinyViT(5).backbone.config == {"image_size": 32, "in_channels": 3, **VIT_SIZES["cpu"]}
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViTBackbone(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="divisible by heads"):
        ViTBackbone(image_size=16, patch_size=8, dim=16, heads=3)
    with pytest.raises(ValueError, match=r"expected \(N, 3, 16, 16\)"):
        ViTBackbone(image_size=16, **TINY)(torch.rand(1, 3, 32, 32))
