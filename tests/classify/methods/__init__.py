"""Tests of cytolt.classify.methods. Shared stand-ins: a tiny model with the CellClassifier interface and a crop
set with the CropSet interface, so the method modules are tested on plain tensors without rendering crops."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cytolt.classify.methods.spec import MethodContext


class TinyModel(nn.Module):
    """``CellClassifier``'s interface: ``backbone`` (N, 3, S, S) -> (N, D) pooled features, ``head`` linear."""

    def __init__(self, num_classes: int = 3, feature_dim: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, feature_dim, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class TinyCrops:
    """``CropSet``'s interface over random uint8 crops."""

    def __init__(self, labels, *, size: int = 8, num_classes: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.images = rng.integers(0, 256, (len(self.labels), size, size, 3), dtype=np.uint8)
        self.class_names = tuple(f"c{k}" for k in range(num_classes))

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def subset(self, indices) -> TinyCrops:
        out = TinyCrops([], num_classes=len(self.class_names))
        out.labels, out.images = self.labels[list(indices)], self.images[list(indices)]
        return out


def tiny_context(
    labels=(0, 0, 0, 0, 1, 1, 2), *, options=None, val=None, num_classes: int = 3, epochs: int = 2
):
    """A MethodContext over a TinyModel and TinyCrops (seeded)."""
    torch.manual_seed(0)
    train = TinyCrops(labels, num_classes=num_classes)
    return MethodContext(
        model=TinyModel(num_classes),
        train=train,
        val=val,
        counts=train.counts(),
        options=dict(options or {}),
        epochs=epochs,
        seed=0,
        device=torch.device("cpu"),
    )
