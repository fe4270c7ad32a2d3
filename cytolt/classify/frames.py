"""A classifier of T >= 1 frames per cell (the focal planes of a z-stack crop), built on a one-frame backbone.

Glossary
    N, T, S     cells, frames (focal planes) per cell, crop side in px.
    D, K        feature dimension of the backbone, number of classes.
    frames      ``(N, T, 3, S, S)`` float in [0, 1]; a plain crop batch ``(N, 3, S, S)`` is ``T = 1``.
    frame features  ``(N, T, D)``: the backbone run on every frame alone (frames share its weights).
    pooled      ``(N, D)``: the frame features pooled over T, what the head sees.

Training on z-stacks (:func:`fit_frames`): the recipe of :mod:`cytolt.classify.train` (AdamW, weight decay 0.05,
cosine decay per step, instance sampling, its flip / 90-degree rotation / brightness augmentation, applied alike
to every plane of a cell) with ``"ce"`` or ``"multi_expert"``
(:mod:`cytolt.classify.methods.multi_expert`, which calibrates the frame features before pooling).

Pooling: ``"mean"`` (the average over frames) or ``"attention"``, the attention-based multiple-instance pooling
of Ilse, Tomczak and Welling ("Attention-based Deep Multiple Instance Learning", ICML 2018, arXiv 1802.04712):
``a = softmax_t(w^T tanh(V h_t))``, pooled ``= sum_t a_t h_t``. Attention lets the model lean on the planes
where the part that decides the class is sharp (the nucleus plane for chromatin, another for the cytoplasm
edge); the mean is the parameter-free baseline. With ``T = 1`` both are the identity, so a
``FrameClassifier`` on one frame is exactly the one-frame classifier it wraps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "FRAME_METHODS",
    "POOLS",
    "AttentionPool",
    "FrameClassifier",
    "FrameFit",
    "MeanPool",
    "as_frames",
    "fit_frames",
    "frame_tensor",
    "predict_frames",
]

POOLS = ("mean", "attention")
FRAME_METHODS = ("ce", "multi_expert")
Pool = Literal["mean", "attention"]


def as_frames(x: Tensor) -> Tensor:
    """``(N, T, C, S, S)`` as is, ``(N, C, S, S)`` as ``(N, 1, C, S, S)``; anything else is a ValueError."""
    if x.dim() == 4:
        return x.unsqueeze(1)
    if x.dim() == 5:
        return x
    raise ValueError(f"frames must be (N, T, C, S, S) or (N, C, S, S); got {tuple(x.shape)}")


def frame_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """``(N, T, S, S, 3)`` (or ``(N, S, S, 3)``) uint8 crops -> ``(N, T, 3, S, S)`` float32 in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim not in (4, 5) or images.shape[-1] != 3:
        raise ValueError(
            f"images must be (N, T, S, S, 3) or (N, S, S, 3) uint8; got {images.shape} {images.dtype}"
        )
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    if batch.dim() == 4:
        batch = batch.unsqueeze(1)
    return batch.permute(0, 1, 4, 2, 3).float().div_(255.0)


class MeanPool(nn.Module):
    """``(N, T, D) -> (N, D)``: the mean over frames."""

    def forward(self, frames: Tensor) -> Tensor:
        return frames.mean(dim=1)


class AttentionPool(nn.Module):
    """``(N, T, D) -> (N, D)``: attention-weighted sum over frames (Ilse et al. 2018, module docstring).

    ``hidden`` is the width of ``V`` (the paper's L; 128 there for 500-d features, here ``max(16, D // 2)``).
    """

    def __init__(self, dim: int, *, hidden: int | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"AttentionPool: dim must be >= 1; got {dim}")
        hidden = max(16, dim // 2) if hidden is None else hidden
        self.project = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def weights(self, frames: Tensor) -> Tensor:
        """``(N, T)`` attention weights, each row summing to 1."""
        return torch.softmax(self.score(torch.tanh(self.project(frames))).squeeze(-1), dim=1)

    def forward(self, frames: Tensor) -> Tensor:
        return (self.weights(frames).unsqueeze(-1) * frames).sum(dim=1)


def _make_pool(pool: str, dim: int) -> nn.Module:
    if pool == "mean":
        return MeanPool()
    if pool == "attention":
        return AttentionPool(dim)
    raise ValueError(f"pool must be one of {', '.join(map(repr, POOLS))}; got {pool!r}")


class FrameClassifier(nn.Module):
    """Frames in, logits out: ``head(pool(backbone(each frame)))``.

    Args:
        backbone: ``(M, 3, S, S) -> (M, D)`` (e.g. ``CellClassifier.backbone``); run on the N * T frames at once.
        head: ``(N, D) -> (N, K)``, replaceable like ``CellClassifier.head``.
        feature_dim: D.
        pool: ``"mean"`` or ``"attention"`` (module docstring).
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, *, feature_dim: int, pool: Pool = "mean"
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = _make_pool(pool, feature_dim)
        self.head = head
        self.feature_dim = int(feature_dim)
        self.pool_name = pool

    @classmethod
    def from_classifier(cls, model: nn.Module, *, pool: Pool = "mean") -> FrameClassifier:
        """Wrap a ``CellClassifier``-like model (``.backbone``, ``.head``, ``.feature_dim``); the modules are
        shared, not copied, so training one trains the other."""
        return cls(model.backbone, model.head, feature_dim=model.feature_dim, pool=pool)

    def frame_features(self, x: Tensor) -> Tensor:
        """``(N, T, 3, S, S)`` or ``(N, 3, S, S)`` -> ``(N, T, D)``."""
        frames = as_frames(x)
        n, t = frames.shape[:2]
        return self.backbone(frames.flatten(0, 1)).reshape(n, t, -1)

    def pool_frames(self, frame_features: Tensor) -> Tensor:
        """``(N, T, D) -> (N, D)``."""
        if frame_features.dim() != 3 or frame_features.size(-1) != self.feature_dim:
            raise ValueError(
                f"frame features must be (N, T, {self.feature_dim}); got {tuple(frame_features.shape)}"
            )
        return self.pool(frame_features)

    def features(self, x: Tensor) -> Tensor:
        """``(N, D)`` pooled features of a batch of frames."""
        return self.pool_frames(self.frame_features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, pool={self.pool_name!r}"


@dataclass
class FrameFit:
    """What :func:`fit_frames` returns: the trained model (eval mode), the method, one dict per epoch
    (``epoch``, ``loss``, ``lr``, ``seconds``), the folder's head dict and the wall time."""

    model: FrameClassifier
    method: str
    head: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def fit_frames(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    method: str = "ce",
    pool: Pool = "mean",
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    width: int = 16,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> FrameFit:
    """Train a ``CellClassifier`` backbone inside a :class:`FrameClassifier` on z-stack crops.

    Args:
        images: ``(N, T, S, S, 3)`` uint8 (``T = 1`` or ``(N, S, S, 3)`` for plain crops); labels: ``(N,)``.
        method: ``"ce"`` (softmax cross-entropy) or ``"multi_expert"`` (``options`` are its
            :data:`~cytolt.classify.methods.multi_expert.OPTIONS`; every class needs a training crop).
        Deterministic from ``seed`` on one machine (initialisation, shuffling, augmentation, calibration).
    """
    from cytolt.classify.methods.multi_expert import build_method, frame_loss
    from cytolt.classify.model import CellClassifier
    from cytolt.classify.train import ADAMW_WEIGHT_DECAY, augment

    if method not in FRAME_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, FRAME_METHODS))}; got {method!r}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(labels) < 2:
        raise ValueError(f"need >= 2 crops and one label each; got {len(images)} crops, {len(labels)} labels")
    if options and method != "multi_expert":
        raise ValueError(f"method {method!r} takes no options; got {sorted(options)}")
    start = time.perf_counter()
    torch.manual_seed(seed)
    base = CellClassifier(num_classes, width=width)
    head_config: dict[str, Any] = {"type": "linear"}
    calibration = None
    if method == "multi_expert":
        counts = np.bincount(labels, minlength=num_classes)
        base.head, calibration, head_config = build_method(base.feature_dim, counts, options, seed=seed)
        calibration = calibration.to(device)
    model = FrameClassifier.from_classifier(base, pool=pool).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    per_epoch = n // batch_size + (n % batch_size > 1)
    total, step = max(1, epochs * per_epoch), 0
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        t0, losses = time.perf_counter(), []
        model.train()
        if calibration is not None:
            calibration.train()
        order = torch.randperm(n, generator=generator).numpy()
        for first in range(0, n, batch_size):
            batch = np.sort(order[first : first + batch_size])
            if len(batch) < 2:
                continue  # batch norm cannot train on one crop
            x = frame_tensor(images[batch], device)
            # One flip / rotation / brightness per cell, the same for all its planes: augment the planes as
            # channels of one crop.
            x = augment(x.flatten(1, 2), generator).view_as(x)
            y = torch.as_tensor(labels[batch], device=device)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * min(step, total) / total))
            if calibration is None:
                loss = nn.functional.cross_entropy(model(x), y)
            else:
                loss = frame_loss(model, calibration, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    model.eval()
    return FrameFit(model, method, head_config, history, time.perf_counter() - start)


@torch.no_grad()
def predict_frames(
    model: nn.Module, images: np.ndarray, *, batch_size: int = 128, device: torch.device | str = "cpu"
) -> np.ndarray:
    """``(N, K)`` float32 logits of ``images (N, T, S, S, 3)`` uint8 under ``model`` in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model(frame_tensor(images[i : i + batch_size], device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)
