"""Equalization Loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for Long-tailed
Object Detection", CVPR 2021, arXiv 2012.08548).

Binary cross-entropy in which each category's positives and negatives are re-weighted by the accumulated ratio
``r_j = G+_j / G-_j`` of the (re-weighted) gradients its positive and negative logits received:
``neg_w = sigmoid(gamma (r_j - mu))``, ``pos_w = 1 + alpha (1 - neg_w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    all_reduce_sum_,
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)

# gamma 12, mu 0.8, alpha 4: the paper's mapping-function settings for LVIS (Tan et al. 2021; also METHODS.md).
GAMMA = 12.0
MU = 0.8
ALPHA = 4.0


def eqlv2_weights(
    pos_grad: Tensor,
    neg_grad: Tensor,
    *,
    gamma: float = GAMMA,
    mu: float = MU,
    alpha: float = ALPHA,
    clamp: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-category weights ``(pos_w (C,), neg_w (C,))`` from accumulated gradients ``G+ (C,)``, ``G- (C,)``.

    ``neg_w = sigmoid(gamma (r - mu))`` and ``pos_w = 1 + alpha (1 - neg_w)`` with ``r = G+ / G-`` (``r`` is
    clamped to ``[0, 1]`` when ``clamp``, as Grad-Libra does). A category with no negative gradient yet gets
    weights 1 and 1: the paper's code starts the ratio at a large value for that reason.
    """
    seen = neg_grad > 0
    ratio = pos_grad / torch.where(seen, neg_grad, torch.ones_like(neg_grad))
    if clamp:
        ratio = ratio.clamp(0, 1)
    neg_w = torch.where(seen, torch.sigmoid(gamma * (ratio - mu)), torch.ones_like(ratio))
    pos_w = 1 + alpha * (1 - neg_w)
    return pos_w, neg_w


def eqlv2_loss(
    logits: Tensor,
    targets: Tensor,
    pos_grad: Tensor,
    neg_grad: Tensor,
    *,
    gamma: float = GAMMA,
    mu: float = MU,
    alpha: float = ALPHA,
    reduction: str = "mean",
) -> Tensor:
    """EQLv2 ``w_ij BCE(z_ij, y_ij)``, ``w_ij = pos_w_j y_ij + neg_w_j (1 - y_ij)`` (Tan et al. 2021).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float one-hot, background rows all zero.
        pos_grad, neg_grad: ``(C,)`` accumulated gradient state (constants here).
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    pos_w, neg_w = eqlv2_weights(pos_grad.detach(), neg_grad.detach(), gamma=gamma, mu=mu, alpha=alpha)
    weight = (pos_w * targets + neg_w * (1 - targets)).to(logits.dtype)
    loss = weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return reduce_loss(loss, reduction)


class EQLv2Loss(nn.Module):
    """EQLv2 with its gradient statistics in buffers, mmdet one-stage call convention.

    Buffers (saved in ``state_dict``): ``pos_grad (C,)``, ``neg_grad (C,)``: accumulated ``|p - y|`` (the
    BCE gradient with respect to the logit) times the EQLv2 weight and the label weight, over positive /
    negative elements of each category (the paper's definition; no reduction divisor). Each training-mode
    ``forward`` uses the state from before the call, then adds the call's gradients (detached, summed over
    processes under DDP). Eval mode never changes it. ``reset()`` zeroes it (weights back to 1).

    ``objectness=True`` is the authors' two-stage form (their released mmdet code, ``EQLv2``): logits are
    ``(N, C + 1)``, the last column a background ("objectness") sigmoid whose target is 1 for background RoIs.
    That column is trained with weight 1 for positives and negatives, and its gradients are not accumulated.
    At test time :meth:`scores` multiplies each class's sigmoid by ``1 - sigmoid(z_bg)``. With
    ``objectness=False`` (one-stage heads, and the C-output variant) logits are ``(N, C)``.
    """

    use_sigmoid = True

    def __init__(
        self,
        num_classes: int,
        *,
        gamma: float = GAMMA,
        mu: float = MU,
        alpha: float = ALPHA,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        objectness: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.objectness = objectness
        self.gamma = gamma
        self.mu = mu
        self.alpha = alpha
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))

    def weights(self) -> tuple[Tensor, Tensor]:
        """Current ``(pos_w (C,), neg_w (C,))``."""
        return eqlv2_weights(self.pos_grad, self.neg_grad, gamma=self.gamma, mu=self.mu, alpha=self.alpha)

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
        outputs = self.num_classes + int(self.objectness)
        check_logits(logits, type(self).__name__, outputs)
        reduction = resolve_reduction(self.reduction, reduction_override)
        # With objectness, label C (background) is the target of the last column.
        targets = expand_labels(labels, outputs, logits.dtype)
        pos_w, neg_w = self.weights()
        if self.objectness:  # the objectness column's weights are always 1 (pos_w = 1 + alpha (1 - 1))
            pos_w, neg_w = (torch.cat([w, w.new_ones(1)]) for w in (pos_w, neg_w))
        w = (pos_w * targets + neg_w * (1 - targets)).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        el_weight = element_weight(weight, bce.shape)
        loss = self.loss_weight * weight_reduce(w * bce, el_weight, reduction, avg_factor)
        if self.training:
            with torch.no_grad():
                grad = (torch.sigmoid(logits) - targets).abs() * w
                if el_weight is not None:
                    grad = grad * el_weight
                grad, cls_targets = grad[:, : self.num_classes], targets[:, : self.num_classes]
                stats = torch.stack([(grad * cls_targets).sum(0), (grad * (1 - cls_targets)).sum(0)])
                stats = all_reduce_sum_(stats.to(self.pos_grad.dtype))
                self.pos_grad += stats[0]
                self.neg_grad += stats[1]
        return loss

    def scores(self, logits: Tensor) -> Tensor:
        """Test-time class scores ``(N, C)``: ``sigmoid(z_c)``, times ``1 - sigmoid(z_bg)`` with objectness (the
        authors' ``get_activation``)."""
        check_logits(logits, type(self).__name__, self.num_classes + int(self.objectness))
        probs = logits.sigmoid()
        if not self.objectness:
            return probs
        return probs[:, : self.num_classes] * (1 - probs[:, self.num_classes :])

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, gamma={self.gamma}, mu={self.mu}, alpha={self.alpha}, "
            f"reduction={self.reduction!r}, loss_weight={self.loss_weight}, objectness={self.objectness}"
        )
