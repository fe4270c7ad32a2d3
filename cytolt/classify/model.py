"""The cell classifier: a narrow ResNet-18 trained from scratch on crops (no pretrained weights reach this machine).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385): ResNet-18 is four stages
of two torchvision ``BasicBlock`` s each; here the stage widths are ``width * (1, 2, 4, 8)`` instead of
64-512 (``width=16`` has 1/16 of the multiply-adds and parameters of the original), and the stem fits cell crops
of 32-128 px instead of 224 px ImageNet images (``STEMS``). The last BatchNorm of every block starts at zero
(Goyal et al., "Accurate, Large Minibatch SGD", arXiv 1706.02677, sec. 5.1; torchvision's
``zero_init_residual``): each block starts as the identity, which trains more reliably from scratch.

Glossary
    x         (N, C, S, S) float in [0, 1]: crops as :class:`~cytolt.classify.crops.CropSet` yields them.
    features  (N, D) float, D = 8 * width: the backbone's globally average-pooled last stage.
    logits    (N, K): the head's output; long-tail methods replace the head (``model.head = ...``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "STEMS", "CellClassifier", "ResNetBackbone"]

# Per-channel mean/std the backbone subtracts and divides by (torchvision's ImageNet values): the BatchNorm after
# the stem makes the exact numbers matter little; set_normalization fits them to a crop set instead.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# stem name -> (what it is, input px per stage-1 px). "s2": a 64 px crop reaches the last stage at 4 x 4 px;
# "imagenet" (torchvision's 7x7/2 conv + 3x3/2 max-pool) leaves 2 x 2 and is 4x cheaper; "s1" keeps the
# detail of 32 px crops at 4x the cost of "s2".
STEMS: dict[str, tuple[str, int]] = {
    "s1": ("3x3 conv, stride 1", 1),
    "s2": ("3x3 conv, stride 2", 2),
    "imagenet": ("7x7 conv, stride 2, and 3x3 max-pool, stride 2", 4),
}
BLOCKS = (2, 2, 2, 2)  # ResNet-18


class ResNetBackbone(nn.Module):
    """(N, C, S, S) in [0, 1] -> (N, 8 * width) features; the input normalisation is held as buffers."""

    def __init__(self, *, width: int = 16, in_channels: int = 3, stem: str = "s2") -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(map(repr, STEMS))}; got {stem!r}")
        mean = IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels
        std = IMAGENET_STD if in_channels == 3 else (0.25,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.in_channels = in_channels
        self.width = width
        self.stem_name = stem
        if stem == "imagenet":
            conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=STEMS[stem][1], padding=1, bias=False)
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if stem == "imagenet":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*layers)
        stages, planes_in = [], width
        for k, blocks in enumerate(BLOCKS):
            planes = width * 2**k
            stages.append(_stage(planes_in, planes, blocks, stride=1 if k == 0 else 2))
            planes_in = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = planes_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions (fan-out, ReLU), BatchNorm 1/0, each block's last BatchNorm 0 (module doc)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def set_normalization(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        """Replace the per-channel input mean and std (e.g. measured on the training crops, in [0, 1] units)."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if (
            mean_t.numel() != self.in_channels
            or std_t.numel() != self.in_channels
            or not bool((std_t > 0).all())
        ):
            raise ValueError(
                f"mean and std must have {self.in_channels} entries, std > 0; got {mean_t.tolist()}, {std_t.tolist()}"
            )
        self.mean.copy_(mean_t.view(1, -1, 1, 1))
        self.std.copy_(std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, S, S) crops; got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return torch.flatten(self.pool(x), 1)


def _stage(planes_in: int, planes: int, blocks: int, *, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first changes width/stride through a 1x1 conv + BatchNorm shortcut."""
    downsample = None
    if stride != 1 or planes_in != planes:
        downsample = nn.Sequential(
            nn.Conv2d(planes_in, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )
    layers = [BasicBlock(planes_in, planes, stride=stride, downsample=downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CellClassifier(nn.Module):
    """Narrow ResNet-18 (torchvision BasicBlock, [2, 2, 2, 2] blocks, widths width * (1, 2, 4, 8)), from scratch.

    Attributes:
        backbone: (N, C, S, S) float in [0, 1] -> (N, D) features (:class:`ResNetBackbone`).
        head: (N, D) -> (N, K) logits; ``nn.Linear(D, K)`` until a method replaces it (``model.head = ...``).
        feature_dim: D = 8 * width.
        num_classes: K.
    """

    def __init__(self, num_classes: int, *, width: int = 16, in_channels: int = 3, stem: str = "s2") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        self.backbone = ResNetBackbone(width=width, in_channels=in_channels, stem=stem)
        self.feature_dim = self.backbone.feature_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(self.feature_dim, num_classes)

    @property
    def width(self) -> int:
        return self.backbone.width

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @property
    def stem(self) -> str:
        return self.backbone.stem_name

    def features(self, x: Tensor) -> Tensor:
        """(N, C, S, S) in [0, 1] -> (N, D)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) in [0, 1] -> (N, K) logits."""
        return self.head(self.backbone(x))

    def load_backbone(self, path: str | os.PathLike[str]) -> None:
        """Load backbone weights (a safetensors file of a backbone state dict, e.g. from another classifier).

        Raises:
            ValueError: the file's tensors do not fit this backbone (missing, unexpected or misshapen, named).
        """
        from safetensors.torch import load_file

        state = load_file(str(path))
        try:
            self.backbone.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: not weights of this backbone (width {self.width}, stem {self.stem!r}): {exc}"
            ) from exc
