"""Polar IoU loss and polar centerness, PolarMask (Xie et al., "PolarMask: Single Shot Instance Segmentation with
Polar Representation", CVPR 2020, arXiv 1909.13226).

PolarMask describes an instance by the lengths of ``n`` rays (36 in the paper, every 10 degrees) cast from a
location inside it to its contour. The IoU of two such star-shaped regions sharing a centre is, in the limit of
many rays, ``integral(min(d, d*)^2) / integral(max(d, d*)^2)``; the paper drops the square (it found the linear
form as good) and takes the negative log, so that

    polar_iou_loss(d, d*) = log( sum_i max(d_i, d*_i) / sum_i min(d_i, d*_i) )

which is 0 for identical rays, positive otherwise, and regresses all rays jointly with a scale-free target (a
ray error counts relative to the instance's size). Polar centerness ``sqrt(min_i d*_i / max_i d*_i)`` is 1 at a
location whose rays are all equal (the centre of a disc) and falls towards 0 near the contour; it down-weights
locations far from the mass centre at test time, as FCOS's centerness does for boxes.

Shapes: ``pred, target (N, R)`` ray lengths in pixels (any positive unit), ``R`` rays per location.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cytolt.losses._common import resolve_reduction, weight_reduce

# Ray lengths are floored here before any ratio: a target ray that leaves the instance at once (a location at
# the edge of a concave cell) has length 0, and the paper's code stores such rays as 1e-6 for the same reason.
RAY_EPS = 1e-6


def _check_rays(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(
            f"pred and target must both be (N, R) ray lengths; got {tuple(pred.shape)}, {tuple(target.shape)}"
        )


def polar_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    """Polar IoU loss ``log(sum max(d, d*) / sum min(d, d*))`` per location (Xie et al. 2020, eq. 7).

    Args:
        pred: (N, R) predicted ray lengths, positive (a head's ``exp`` output).
        target: (N, R) target ray lengths.
        weight: (N,) per-location weight (PolarMask weights by the polar centerness target, as FCOS does).
        reduction: "none" returns (N,), "mean" or "sum".
        avg_factor: with "mean", the sum is divided by this instead of N (mmdet's convention).

    The gradient w.r.t. a ray that is too long is ``1 / sum max`` (positive: shrink it), w.r.t. one that is
    too short ``-1 / sum min`` (negative: grow it).
    """
    _check_rays(pred, target)
    pred = pred.clamp(min=RAY_EPS)
    target = target.clamp(min=RAY_EPS)
    longer = torch.maximum(pred, target).sum(dim=1)
    shorter = torch.minimum(pred, target).sum(dim=1)
    loss = torch.log(longer / shorter)
    return weight_reduce(loss, weight, reduction, avg_factor)


def polar_centerness(rays: Tensor) -> Tensor:
    """Polar centerness ``sqrt(min_i d_i / max_i d_i)`` of (N, R) ray lengths -> (N,), in (0, 1] (eq. 3)."""
    if rays.dim() != 2:
        raise ValueError(f"rays must be (N, R); got {tuple(rays.shape)}")
    rays = rays.clamp(min=RAY_EPS)
    return torch.sqrt(rays.min(dim=1).values / rays.max(dim=1).values)


class PolarIoULoss(nn.Module):
    """:func:`polar_iou_loss` as a module with mmdet's regression-loss call.

    ``forward(pred (N, R), target (N, R), weight=None (N,), avg_factor=None, reduction_override=None)``.
    """

    def __init__(self, *, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        reduction = resolve_reduction(self.reduction, reduction_override)
        loss = polar_iou_loss(pred, target, weight=weight, reduction=reduction, avg_factor=avg_factor)
        return self.loss_weight * loss
