"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv 1708.02002)."""

from __future__ import annotations

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

# alpha 0.25, gamma 2 are the paper's best RetinaNet setting (Lin et al. 2017, Table 1a/1b).
ALPHA = 0.25
GAMMA = 2.0


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float | None = ALPHA,
    gamma: float = GAMMA,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` on independent sigmoids (Lin et al. 2017, eq. 5).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float in ``[0, 1]``, one-hot per row; background rows are all zero.
        alpha: weight of the positives (``1 - alpha`` on negatives); ``None`` disables the balancing.
        gamma: focusing exponent; ``0`` gives (alpha-balanced) binary cross-entropy.
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return reduce_loss(loss, reduction)


class FocalLoss(nn.Module):
    """Sigmoid focal loss with mmdet's one-stage head call convention; stateless.

    ``forward(logits (N, C), labels (N,) int64 with C = background, weight (N,) | (N, C) | None,
    avg_factor, reduction_override) -> loss``.
    """

    use_sigmoid = True

    def __init__(
        self,
        *,
        alpha: float | None = ALPHA,
        gamma: float = GAMMA,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        check_logits(logits, type(self).__name__)
        reduction = resolve_reduction(self.reduction, reduction_override)
        targets = expand_labels(labels, logits.size(1), logits.dtype)
        loss = sigmoid_focal_loss(logits, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")
        loss = weight_reduce(loss, element_weight(weight, loss.shape), reduction, avg_factor)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
