"""Softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv 1708.02002).

``FL = -(1 - p_y)^gamma log p_y`` with ``p = softmax(z)`` over the ``K`` classes: the paper's focusing term on the
multi-class softmax (the paper's detector uses sigmoids, ``cytolt.losses.focal``; it notes the softmax form works
too). Adapted for crops: no alpha balancing (a softmax over ``K`` classes has no one-vs-background imbalance to
weight; a class weight is what the other methods add), no background column.
"""

from __future__ import annotations

from torch import Tensor, nn

from cytolt.classify.methods.spec import MethodContext, MethodSpec
from cytolt.losses._common import check_logits, reduce_loss, resolve_reduction, row_logsumexp

__all__ = ["FOCAL", "GAMMA", "SoftmaxFocalLoss", "softmax_focal_loss"]

# gamma 2: the paper's best setting (Lin et al. 2017, Table 1b).
GAMMA = 2.0


def softmax_focal_loss(
    logits: Tensor, labels: Tensor, *, gamma: float = GAMMA, reduction: str = "mean"
) -> Tensor:
    """``-(1 - p_y)^gamma log p_y`` per row, ``p = softmax(logits)``.

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)`` int64 in ``0..K-1``.
        gamma: focusing exponent >= 0; 0 is softmax cross-entropy.
        reduction: ``"none"`` (``(N,)``), ``"mean"`` or ``"sum"``.
    """
    check_logits(logits, "softmax_focal_loss")
    if gamma < 0:
        raise ValueError(f"softmax_focal_loss: gamma must be >= 0; got {gamma}")
    log_p = logits.gather(1, labels.reshape(-1, 1)).reshape(-1) - row_logsumexp(logits)
    loss = -log_p if gamma == 0 else -((1 - log_p.exp()).clamp_min(0) ** gamma) * log_p
    return reduce_loss(loss, resolve_reduction(reduction, None))


class SoftmaxFocalLoss(nn.Module):
    """``loss(logits (N, K), labels (N,)) -> mean softmax focal loss``; stateless."""

    def __init__(self, *, gamma: float = GAMMA) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"SoftmaxFocalLoss: gamma must be >= 0; got {gamma}")
        self.gamma = float(gamma)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return softmax_focal_loss(logits, labels, gamma=self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


def _loss(ctx: MethodContext) -> nn.Module:
    return SoftmaxFocalLoss(gamma=FOCAL.option(ctx, "focal_gamma"))


FOCAL = MethodSpec(
    name="focal",
    paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017 (softmax form)",
    build_loss=_loss,
    options={"focal_gamma": GAMMA},
)
