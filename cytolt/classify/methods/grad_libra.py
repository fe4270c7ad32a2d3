"""Grad-Libra's classification form (Liu et al., "Sample Hardness Based Gradient Loss for Long-Tailed Cervical
Cell Detection", MICCAI 2022, arXiv 2208.03779; cytolt's documented RECONSTRUCTION, :mod:`cytolt.losses.grad_libra`).

K independent sigmoids with one-hot targets, each element weighted by its category's positive/negative gradient
balance and its calibrated hardness (:class:`cytolt.losses.grad_libra.GradLibraLoss`), summed and divided by the
number of crops (the detector divides by its positives; here every crop is one).

Adapted for cell crops: no background rows (every crop is a cell of one class); the base loss is plain BCE
(``focal_gamma=0``, ``focal_alpha=None``, the reconstruction's spec form): the focal modulation exists for a dense
head's ~10^4 easy negatives per positive, and a crop has only K - 1 negatives. At inference the K sigmoid scores
are normalised to sum 1 for the report and for screening: :class:`SigmoidNormHead` returns ``log sigmoid(z)``, whose
softmax is exactly ``sigmoid(z) / sum_k sigmoid(z_k)``.
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.losses.grad_libra import GradLibraLoss

__all__ = ["GRAD_LIBRA", "GradLibraClassificationLoss", "SigmoidNormHead", "build_sigmoid_head"]


class GradLibraClassificationLoss(GradLibraLoss):
    """:class:`GradLibraLoss` with the BCE base, ``loss(logits (N, K), labels (N,))`` = sum over elements / N."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, focal_gamma=0.0, focal_alpha=None)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(logits, labels, avg_factor=labels.numel())


class SigmoidNormHead(nn.Module):
    """``log sigmoid(linear(x))``: a softmax over it gives the sigmoid scores normalised to sum 1."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return F.logsigmoid(self.linear(x))


def _loss(ctx: MethodContext) -> nn.Module:
    return GradLibraClassificationLoss(ctx.num_classes).to(ctx.device)


def _finish(ctx: MethodContext) -> Head:
    return Head(SigmoidNormHead(copy.deepcopy(stage_one_linear(ctx, "grad_libra"))), {"type": "sigmoid_norm"})


def build_sigmoid_head(feature_dim: int, num_classes: int) -> nn.Module:
    """The folder's builder for ``{"type": "sigmoid_norm"}`` (weights from the file)."""
    return SigmoidNormHead(nn.Linear(feature_dim, num_classes))


GRAD_LIBRA = MethodSpec(
    name="grad_libra",
    paper="Liu et al., Sample Hardness Based Gradient Loss for Long-Tailed Cervical Cell Detection, MICCAI 2022 (reconstruction)",
    build_loss=_loss,
    finish=_finish,
)
