"""Balanced binary cross-entropy, Bal-BCE (Xu et al., "Learning Imbalanced Data with Vision Transformers" (LiVT),
CVPR 2023, arXiv 2212.02015).

Logit adjustment for independent sigmoids: train ``BCE(z + log(pi / (1 - pi)), y)`` with ``pi_c`` the prior of
category ``c``, and score with the raw ``z`` at test time, so that frequent categories do not win by their prior.
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


def prior_log_odds(class_prior: Tensor) -> Tensor:
    """``log(pi / (1 - pi))``, ``(C,)``."""
    return torch.log(class_prior) - torch.log1p(-class_prior)


def balanced_bce_loss(
    logits: Tensor, targets: Tensor, class_prior: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """Bal-BCE ``BCE(z + log(pi / (1 - pi)), y)`` (Xu et al. 2023).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float one-hot, background rows all zero.
        class_prior: ``(C,)``, each in ``(0, 1)``: how often a sample is positive for the category.
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    shifted = logits + prior_log_odds(class_prior.to(logits.dtype))
    return reduce_loss(F.binary_cross_entropy_with_logits(shifted, targets, reduction="none"), reduction)


class BalancedBCELoss(nn.Module):
    """Bal-BCE with mmdet's one-stage call convention; ``class_prior (C,)`` is a buffer (saved, never updated).

    For a detector, ``pi_c`` is best the fraction of training samples (anchors, points) positive for ``c``;
    the fraction of instances ``n_c / sum n`` is a usable stand-in that keeps the right order.
    """

    use_sigmoid = True

    def __init__(
        self,
        class_prior: Sequence[float] | Tensor,
        *,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        prior = torch.as_tensor(class_prior, dtype=torch.float32).flatten()
        if prior.numel() == 0 or not bool(((prior > 0) & (prior < 1)).all()):
            raise ValueError(
                f"BalancedBCELoss: class_prior must be non-empty with values in (0, 1); got {prior.tolist()}"
            )
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("class_prior", prior)

    @property
    def num_classes(self) -> int:
        return self.class_prior.numel()

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
        loss = balanced_bce_loss(logits, targets, self.class_prior, reduction="none")
        return self.loss_weight * weight_reduce(
            loss, element_weight(weight, loss.shape), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
