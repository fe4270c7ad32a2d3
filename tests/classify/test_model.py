"""The narrow ResNet-18: shapes, widths, stems, the input normalisation inside, a replaceable head, local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.resnet import BasicBlock

from cytolt.classify.model import IMAGENET_MEAN, IMAGENET_STD, STEMS, CellClassifier


@pytest.mark.parametrize("stem", sorted(STEMS))
def test_shapes_for_every_stem(stem: str) -> None:
    torch.manual_seed(0)
    model = CellClassifier(5, width=4, stem=stem).eval()
    x = torch.rand(3, 3, 32, 32)
    assert model.feature_dim == 32 and model.num_classes == 5  # D = 8 * width
    assert model.features(x).shape == (3, 32)
    assert model(x).shape == (3, 5)


def test_it_is_resnet18_with_the_asked_widths() -> None:
    model = CellClassifier(3, width=8)
    blocks = [m for m in model.backbone.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8  # [2, 2, 2, 2]
    assert [b.conv2.out_channels for b in blocks] == [8, 8, 16, 16, 32, 32, 64, 64]
    # each block starts as the identity: its last BatchNorm scale is 0 (zero_init_residual)
    assert all(float(b.bn2.weight.abs().sum()) == 0.0 for b in blocks)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 64


def test_the_backbone_normalises_inputs_in_unit_range_with_its_buffers() -> None:
    model = CellClassifier(2, width=2)
    backbone = model.backbone
    assert torch.allclose(backbone.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(backbone.std.flatten(), torch.tensor(IMAGENET_STD))
    assert {"backbone.mean", "backbone.std"} <= set(model.state_dict())
    # the stem sees (x - mean) / std: feed the mean image and the first conv sees exact zeros
    seen: dict[str, torch.Tensor] = {}

    def keep_input(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["in"] = inputs[0]

    backbone.stem[0].register_forward_hook(keep_input)
    model.eval()(backbone.mean.expand(1, 3, 16, 16).clone())
    assert float(seen["in"].abs().max()) == 0.0
    backbone.set_normalization([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    assert torch.allclose(backbone.std.flatten(), torch.full((3,), 0.2))
    with pytest.raises(ValueError, match="std > 0"):
        backbone.set_normalization([0.5, 0.5, 0.5], [0.2, 0.0, 0.2])


def test_the_head_can_be_replaced_and_gradients_reach_the_backbone() -> None:
    torch.manual_seed(1)
    model = CellClassifier(4, width=2)
    model.head = nn.Sequential(nn.Linear(model.feature_dim, 4), nn.Tanh())
    out = model(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, 4) and float(out.abs().max()) <= 1.0
    out.sum().backward()
    assert model.backbone.stem[0].weight.grad is not None
    assert float(model.backbone.stem[0].weight.grad.abs().sum()) > 0


def test_bad_arguments_and_inputs() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        CellClassifier(0)
    with pytest.raises(ValueError, match="stem must be one of 's1', 's2', 'imagenet'"):
        CellClassifier(2, stem="s3")
    with pytest.raises(ValueError, match=r"expected \(N, 3, S, S\)"):
        CellClassifier(2, width=2)(torch.rand(3, 16, 16))


def test_load_backbone_takes_a_safetensors_state_dict_and_names_misfits(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = CellClassifier(3, width=2)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    target = CellClassifier(7, width=2)
    target.load_backbone(path)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(source.eval().features(x), target.eval().features(x))
    with pytest.raises(ValueError, match="backbone.safetensors: not weights of this backbone"):
        CellClassifier(3, width=4).load_backbone(path)
