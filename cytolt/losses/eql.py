"""Equalization Loss (Tan et al., "Equalization Loss for Long-Tailed Object Recognition", CVPR 2020,
arXiv 2003.05176).

Binary cross-entropy that ignores, for foreground samples, the negative terms of rare categories (image
frequency ``f_j < lambda``), so that rare categories are not suppressed by the positives of frequent ones:
``w_ij = 1 - E(i) T_lambda(f_j) (1 - y_ij)`` with ``E(i) = 1`` for a foreground sample, ``0`` for background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)

# lambda: 0.00177 on LVIS v0.5 (Tan et al. 2020) and 0.0011 on LVIS v1, the authors' settings (METHODS.md).
LAMBDA_LVIS_V05 = 0.00177
LAMBDA_LVIS_V1 = 0.0011


def eql_weights(targets: Tensor, image_freq: Tensor, *, lambda_: float = LAMBDA_LVIS_V1) -> Tensor:
    """``w (N, C) = 1 - E(i) T(f_j) (1 - y_ij)``: 0 on the negatives of rare categories in foreground rows."""
    foreground = (targets.sum(1, keepdim=True) > 0).to(targets.dtype)  # E(i): the row has a positive
    rare = (image_freq < lambda_).to(targets.dtype)  # T_lambda(f_j)
    return 1 - foreground * rare * (1 - targets)


def equalization_loss(
    logits: Tensor,
    targets: Tensor,
    image_freq: Tensor,
    *,
    lambda_: float = LAMBDA_LVIS_V1,
    reduction: str = "mean",
) -> Tensor:
    """EQL ``sum_j w_ij BCE(z_ij, y_ij)`` (Tan et al. 2020, sigmoid form).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float one-hot, background rows all zero.
        image_freq: ``(C,)`` fraction of training images that contain each category.
        lambda_: frequency threshold below which a category counts as rare.
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    weight = eql_weights(targets, image_freq.to(logits.device), lambda_=lambda_)
    loss = weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return reduce_loss(loss, reduction)


class EQLLoss(nn.Module):
    """EQL with mmdet's one-stage call convention; the image frequencies are a buffer (saved, never updated).

    ``image_freq`` is ``(C,)``, ``f_j`` in ``[0, 1]``: the fraction of training images containing category ``j``.
    """

    use_sigmoid = True

    def __init__(
        self,
        image_freq: Sequence[float] | Tensor,
        *,
        lambda_: float = LAMBDA_LVIS_V1,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        freq = torch.as_tensor(image_freq, dtype=torch.float32).flatten()
        if freq.numel() == 0:
            raise ValueError("EQLLoss: image_freq is empty; give one frequency per category")
        self.lambda_ = lambda_
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("image_freq", freq)

    @property
    def num_classes(self) -> int:
        return self.image_freq.numel()

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        check_logits(logits, type(self).__name__, self.num_classes)
        reduction = resolve_reduction(self.reduction, reduction_override)
        targets = expand_labels(labels, self.num_classes, logits.dtype)
        loss = equalization_loss(logits, targets, self.image_freq, lambda_=self.lambda_, reduction="none")
        return self.loss_weight * weight_reduce(
            loss, element_weight(weight, loss.shape), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, lambda_={self.lambda_}, reduction={self.reduction!r}, "
            f"loss_weight={self.loss_weight}"
        )
