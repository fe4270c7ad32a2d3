"""Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021, arXiv 2008.10032).

Softmax cross-entropy in which the penalty a sample of category ``i`` puts on another category ``j`` is scaled
by ``S_ij = M_ij C_ij``, added to the non-target logits as ``log S_ij``:

- mitigation ``M_ij = (N_j / N_i)^p`` when ``N_j < N_i`` (else 1), ``N`` the cumulative training counts;
- compensation ``C_ij = (s_j / s_i)^q`` when ``s_j > s_i`` (else 1), ``s`` the (detached) softmax scores,
  ``s_i`` clamped below at ``eps``.

The module adds the paper's objectness branch: a 2-way softmax foreground / background trained on every sample,
while the seesaw term covers foreground samples only.

Glossary: ``N`` samples, ``C`` foreground categories; module logits are ``(N, C + 2)`` (``C`` class logits, then
objectness ``[foreground, background]``, mmdet's layout) or ``(N, C + 1)`` (a one-stage softmax head: ``C``
class logits, then one background logit).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    all_reduce_sum_,
    check_logits,
    cross_entropy_rows,
    reduce_loss,
    resolve_reduction,
    row_logsumexp,
    sample_weight,
    stable_softplus,
    weight_reduce,
)

# p 0.8, q 2.0, eps 0.01: the paper's LVIS settings (Wang et al. 2021), also mmdet's defaults.
P = 0.8
Q = 2.0
EPS = 0.01


def seesaw_log_factors(
    logits: Tensor,
    labels: Tensor,
    cum_samples: Tensor,
    *,
    p: float = P,
    q: float = Q,
    eps: float = EPS,
) -> Tensor:
    """``log S (N, C) = log M[labels] + log C``, detached; column ``labels[i]`` of row ``i`` is 0.

    Computed in log space: ``log M_ij = p min(0, log N_j - log N_i)`` (counts clamped to at least 1, as a
    category never seen would otherwise give ``log 0``), ``log C_ij = q max(0, log s_j - log max(s_i, eps))``.
    """
    with torch.no_grad():
        return _log_factors(logits, labels, cum_samples, row_logsumexp(logits), p, q, eps)


def _log_factors(
    logits: Tensor, labels: Tensor, cum_samples: Tensor, lse: Tensor, p: float, q: float, eps: float
) -> Tensor:
    """:func:`seesaw_log_factors` given ``lse = logsumexp(logits, 1)`` (no grad)."""
    # counts in float32 at least: millions of samples overflow float16 before the log
    wide = torch.promote_types(logits.dtype, torch.float32)
    log_n = cum_samples.to(wide).clamp(min=1).log().to(logits.dtype)
    log_m = p * (log_n.reshape(1, -1) - log_n[labels].reshape(-1, 1)).clamp(max=0)
    # log s_j - log max(s_i, eps) = z_j - max(z_i, logsumexp(z) + log eps): the softmax normaliser cancels
    self_logit = logits.gather(1, labels.reshape(-1, 1))
    floor = torch.maximum(self_logit, lse.reshape(-1, 1) + math.log(eps))
    return log_m + q * (logits - floor).clamp(min=0)


def seesaw_loss(
    logits: Tensor,
    labels: Tensor,
    cum_samples: Tensor,
    *,
    p: float = P,
    q: float = Q,
    eps: float = EPS,
    reduction: str = "mean",
) -> Tensor:
    """Seesaw cross-entropy ``CE(z + log(S) * (1 - y), labels)`` (Wang et al. 2021); counts not updated.

    Args:
        logits: ``(N, C)`` class logits.
        labels: ``(N,)`` int64 in ``0..C-1``.
        cum_samples: ``(C,)`` cumulative training counts ``N_j`` (the caller updates them).
        p, q, eps: mitigation exponent, compensation exponent, lower clamp of the target score.
        reduction: ``"none"`` (``(N,)``), ``"mean"`` or ``"sum"``.
    """
    # log S is exactly 0 on the target column (M_ii = C_ii = 1), so it is added to every column unmasked.
    adjusted = logits + seesaw_log_factors(logits, labels, cum_samples, p=p, q=q, eps=eps)
    return reduce_loss(cross_entropy_rows(adjusted, labels), reduction)


def split_seesaw_logits(logits: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(N, C + 2)`` or ``(N, C + 1)`` -> class logits ``(N, C)``, objectness ``(N, 2)`` ``[fg, bg]``.

    With ``C + 1`` columns the objectness is derived: ``[logsumexp(class logits), background logit]``. Then
    ``softmax(objectness)[0] * softmax(class logits)`` equals the ``C + 1``-way softmax of the head, so a
    one-stage head that scores with ``softmax(logits)[:, :C]`` sees exactly the probabilities this loss trains.
    """
    classes = logits[:, :num_classes]
    if logits.size(1) == num_classes + 2:
        return classes, logits[:, num_classes:]
    foreground = row_logsumexp(classes).reshape(-1, 1)
    return classes, torch.cat([foreground, logits[:, num_classes:]], dim=1)


def seesaw_scores(logits: Tensor, num_classes: int) -> Tensor:
    """Probabilities ``(N, C + 1)``: ``P(fg) softmax(class logits)``, then ``P(bg)`` (background last)."""
    classes, objectness = split_seesaw_logits(logits, num_classes)
    obj = F.softmax(objectness, dim=1)
    return torch.cat([F.softmax(classes, dim=1) * obj[:, :1], obj[:, 1:]], dim=1)


class SeesawLoss(nn.Module):
    """Seesaw loss with objectness branch and cumulative counts in a buffer; mmdet call convention.

    ``forward(logits (N, C + 2) | (N, C + 1), labels (N,) int64 with C = background, weight (N,) | None,
    avg_factor, reduction_override)`` returns the class term (seesaw cross-entropy over foreground samples)
    plus the objectness term (2-way cross-entropy over all samples); ``losses()`` returns them apart under
    mmdet's names. With ``"mean"`` and no ``avg_factor`` the class term averages over foreground samples and
    the objectness term over all samples (as mmdet's ``SeesawLoss``); with ``"none"`` the class term is 0 on
    background rows.

    Buffer ``cum_samples (C + 1,)`` (mmdet's layout, background count last): a training-mode call first adds
    the batch's label counts (summed over processes under DDP), then computes the loss. ``reset()`` zeroes it.
    Nothing is indexed by a data-dependent mask, so the call never waits on the GPU.
    """

    use_sigmoid = False

    def __init__(
        self,
        num_classes: int,
        *,
        p: float = P,
        q: float = Q,
        eps: float = EPS,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.p = p
        self.q = q
        self.eps = eps
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("cum_samples", torch.zeros(num_classes + 1))

    def reset(self) -> None:
        """Forget the cumulative counts."""
        self.cum_samples.zero_()

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        parts = self.losses(logits, labels, weight, avg_factor, reduction_override)
        return parts["loss_cls_classes"] + parts["loss_cls_objectness"]

    def losses(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> dict[str, Tensor]:
        """The two terms apart: ``{"loss_cls_classes": ..., "loss_cls_objectness": ...}``."""
        c = self.num_classes
        check_logits(logits, type(self).__name__, (c + 2, c + 1))
        reduction = resolve_reduction(self.reduction, reduction_override)
        labels = labels.reshape(-1)
        w = sample_weight(weight, labels.numel())
        if self.training:
            with torch.no_grad():
                counts = torch.zeros_like(self.cum_samples).index_add_(
                    0, labels, torch.ones_like(labels, dtype=self.cum_samples.dtype)
                )
                self.cum_samples += all_reduce_sum_(counts)

        foreground = (labels < c).to(logits.dtype)
        class_logits = logits[:, :c]
        class_lse = row_logsumexp(class_logits)
        if logits.size(1) == c + 2:
            margin = logits[:, c + 1] - logits[:, c]  # objectness columns [fg, bg]
        else:  # derived objectness [logsumexp(classes), background], see split_seesaw_logits
            margin = logits[:, c] - class_lse
        # Background rows get a valid stand-in label and are then zeroed, instead of being dropped by a
        # boolean index (which would make the host wait for the mask).
        safe_labels = labels.clamp(max=c - 1)
        with torch.no_grad():
            log_s = _log_factors(
                class_logits, safe_labels, self.cum_samples[:c], class_lse.detach(), self.p, self.q, self.eps
            )
        cls_loss = cross_entropy_rows(class_logits + log_s, safe_labels)
        cls_weight = foreground if w is None else foreground * w
        if reduction == "mean" and avg_factor is None:
            # mmdet averages the class term over the foreground samples only.
            loss_classes = (cls_loss * cls_weight).sum() / foreground.sum().clamp(min=1)
        else:
            loss_classes = weight_reduce(cls_loss, cls_weight, reduction, avg_factor)
        # 2-way cross-entropy [fg, bg]: softplus(z_other - z_target)
        obj_loss = stable_softplus(torch.where(labels >= c, -margin, margin))
        loss_objectness = weight_reduce(obj_loss, w, reduction, avg_factor)
        return {
            "loss_cls_classes": self.loss_weight * loss_classes,
            "loss_cls_objectness": self.loss_weight * loss_objectness,
        }

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, p={self.p}, q={self.q}, eps={self.eps}, "
            f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
