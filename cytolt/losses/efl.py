"""Equalized Focal Loss (Li et al., "Equalized Focal Loss for Dense Long-Tailed Object Detection", CVPR 2022,
arXiv 2201.02593).

Focal loss whose focusing exponent and weight grow for categories whose positives receive little gradient
compared with their negatives: ``gamma_j = gamma_b + s (1 - g_j)`` and weight ``gamma_j / gamma_b`` on every
element of category ``j``, where ``g_j = clamp(G+_j / G-_j, 0, 1)`` is the accumulated ratio of the gradient
magnitudes the loss itself sent to the positive and to the negative logits of ``j``. The authors' code
(ModelTC/EOD) collects that gradient at the classification logits with a backward hook; here it is computed
in closed form inside ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    AVG_FACTOR_EPS,
    all_reduce_sum_,
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)

# gamma_b = 2, s = 8, alpha = 0.25: the paper's settings for its LVIS v1 one-stage runs (Li et al. 2022; gamma_b and
# alpha are focal loss's, s was chosen by the paper's ablation).
GAMMA_B = 2.0
SCALE = 8.0
ALPHA = 0.25


def efl_gamma(pos_neg: Tensor, *, gamma_b: float = GAMMA_B, scale: float = SCALE) -> Tensor:
    """Per-category focusing exponent ``gamma_j = gamma_b + scale (1 - clamp(r_j, 0, 1))``, ``(C,)``."""
    return gamma_b + scale * (1 - pos_neg.clamp(0, 1))


def equalized_focal_loss(
    logits: Tensor,
    targets: Tensor,
    pos_neg: Tensor,
    *,
    gamma_b: float = GAMMA_B,
    scale: float = SCALE,
    alpha: float | None = ALPHA,
    reduction: str = "mean",
) -> Tensor:
    """EFL ``-alpha_t (gamma_j / gamma_b) (1 - p_t)^gamma_j log(p_t)`` (Li et al. 2022).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float one-hot, background rows all zero.
        pos_neg: ``(C,)`` positive-to-negative gradient ratio ``r_j``; treated as a constant (detached).
            ``r_j >= 1`` for every ``j`` gives the sigmoid focal loss.
        gamma_b, scale, alpha: base exponent, its category-dependent range, positive weight (``None``: off).
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    loss, _ = _efl_terms(logits, targets, pos_neg, gamma_b=gamma_b, scale=scale, alpha=alpha, need_grad=False)
    return reduce_loss(loss, reduction)


def efl_grad_magnitude(
    logits: Tensor,
    targets: Tensor,
    pos_neg: Tensor,
    *,
    gamma_b: float = GAMMA_B,
    scale: float = SCALE,
    alpha: float | None = ALPHA,
) -> Tensor:
    """``|d loss_ij / d z_ij|`` of the element-wise EFL, ``(N, C)``, in closed form (no autograd).

    With ``q = p_t`` and ``l = -(1 - q)^g log q``: ``|dl/dz| = (1 - q)^g (1 - q - g q log q)``, times the
    element's ``alpha_t gamma_j / gamma_b`` (``gamma_j`` is a constant of the step, as in the paper).
    """
    with torch.no_grad():
        _, grad = _efl_terms(
            logits, targets, pos_neg, gamma_b=gamma_b, scale=scale, alpha=alpha, need_grad=True
        )
    return grad


def _efl_terms(
    logits: Tensor,
    targets: Tensor,
    pos_neg: Tensor,
    *,
    gamma_b: float,
    scale: float,
    alpha: float | None,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Element-wise loss and, when ``need_grad``, its detached gradient magnitude from the same intermediates
    (a training step computes the sigmoid, the BCE and the tensor power once)."""
    gamma = efl_gamma(pos_neg.detach(), gamma_b=gamma_b, scale=scale).to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t, stable
    p = torch.sigmoid(logits)
    q = p * targets + (1 - p) * (1 - targets)
    factor = gamma / gamma_b
    if alpha is not None:
        factor = (alpha * targets + (1 - alpha) * (1 - targets)) * factor
    # (1 - q)^gamma_j as exp(gamma_j log(1 - q)): on CPU a power with a per-column tensor exponent is several
    # times slower than exp and log. The clamp keeps log finite where q rounds to 1; the true derivative there is
    # 0 anyway (gamma_j >= gamma_b > 1 in practice).
    modulator = torch.exp(gamma * torch.log((1 - q).clamp(min=torch.finfo(q.dtype).tiny)))
    loss = factor * modulator * ce
    if not need_grad:
        return loss, None
    with torch.no_grad():
        grad = factor * modulator * (1 - q + gamma * q * ce)
    return loss, grad


def pos_neg_ratio(pos_grad: Tensor, neg_grad: Tensor) -> Tensor:
    """``r_j = G+_j / G-_j``, and ``1`` (balanced) for a category that has no negative gradient yet.

    The paper's code starts the ratio at 1 so that training begins as plain focal loss; a zero denominator only
    happens before the first update.
    """
    safe = torch.where(neg_grad > 0, neg_grad, torch.ones_like(neg_grad))
    return torch.where(neg_grad > 0, pos_grad / safe, torch.ones_like(pos_grad))


class EqualizedFocalLoss(nn.Module):
    """EFL with its gradient statistics in buffers, mmdet one-stage call convention.

    Buffers (saved in ``state_dict``): ``pos_grad (C,)``, ``neg_grad (C,)``: accumulated magnitudes of the
    gradient this loss sent to the positive / negative logits of each category (label weights, reduction,
    ``avg_factor`` and ``loss_weight`` included: what backward delivers). Each training-mode ``forward`` uses
    the state as it was before the call, then adds the call's gradients (detached, summed over processes
    under DDP). Eval mode reads the state and never changes it. ``reset()`` zeroes it (training restarts as
    focal loss).
    """

    use_sigmoid = True

    def __init__(
        self,
        num_classes: int,
        *,
        gamma_b: float = GAMMA_B,
        scale: float = SCALE,
        alpha: float | None = ALPHA,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.gamma_b = gamma_b
        self.scale = scale
        self.alpha = alpha
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))

    @property
    def pos_neg(self) -> Tensor:
        """Current ``clamp(G+ / G-, 0, 1)``, ``(C,)``."""
        return pos_neg_ratio(self.pos_grad, self.neg_grad).clamp(0, 1)

    def reset(self) -> None:
        """Forget the accumulated gradients."""
        self.pos_grad.zero_()
        self.neg_grad.zero_()

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
        loss, grad = _efl_terms(
            logits,
            targets,
            self.pos_neg,
            gamma_b=self.gamma_b,
            scale=self.scale,
            alpha=self.alpha,
            need_grad=self.training,
        )
        el_weight = element_weight(weight, loss.shape)
        out = self.loss_weight * weight_reduce(loss, el_weight, reduction, avg_factor)
        if grad is not None:
            self._accumulate(grad, targets, el_weight, reduction, avg_factor)
        return out

    @torch.no_grad()
    def _accumulate(
        self,
        grad: Tensor,
        targets: Tensor,
        el_weight: Tensor | None,
        reduction: str,
        avg_factor: float | Tensor | None,
    ) -> None:
        # Scale exactly as backward would: the reduction's divisor and loss_weight apply to every element.
        grad = grad * self.loss_weight
        if el_weight is not None:
            grad = grad * el_weight
        if reduction == "mean":
            grad = grad / (avg_factor + AVG_FACTOR_EPS) if avg_factor is not None else grad / grad.numel()
        stats = torch.stack([(grad * targets).sum(0), (grad * (1 - targets)).sum(0)]).to(self.pos_grad.dtype)
        all_reduce_sum_(stats)
        self.pos_grad += stats[0]
        self.neg_grad += stats[1]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, gamma_b={self.gamma_b}, scale={self.scale}, alpha={self.alpha}, "
            f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
