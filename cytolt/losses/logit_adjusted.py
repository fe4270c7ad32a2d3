"""Logit-adjusted softmax cross-entropy (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021,
arXiv 2007.07314).

Train ``CE(z + tau log pi, y)`` with ``pi`` the class prior and score with the raw ``z``: the network learns
logits from which the prior has been factored out, which targets the balanced error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    cross_entropy_rows,
    reduce_loss,
    resolve_reduction,
    sample_weight,
    weight_reduce,
)

# tau = 1: the paper's default, which makes the adjusted loss Fisher-consistent for the balanced error
# (Menon et al. 2021).
TAU = 1.0


def adjust_logits(logits: Tensor, class_prior: Tensor, *, tau: float = TAU) -> Tensor:
    """``z + tau log pi``; with ``K - 1`` priors for ``K`` logits the last (background) column is not shifted."""
    shift = tau * torch.log(class_prior.to(logits.dtype))
    if shift.numel() == logits.size(1) - 1:
        shift = torch.cat([shift, shift.new_zeros(1)])
    return logits + shift


def logit_adjusted_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    class_prior: Tensor,
    *,
    tau: float = TAU,
    reduction: str = "mean",
) -> Tensor:
    """``CE(z + tau log pi, y)`` (Menon et al. 2021, logit-adjusted loss).

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)`` int64 in ``0..K-1``.
        class_prior: ``(K,)``, or ``(K - 1,)`` to leave a last background column unadjusted; positive.
        tau: strength of the adjustment (0: plain cross-entropy).
        reduction: ``"none"`` (``(N,)``), ``"mean"`` or ``"sum"``.
    """
    adjusted = adjust_logits(logits, class_prior, tau=tau)
    return reduce_loss(cross_entropy_rows(adjusted, labels), reduction)


class LogitAdjustedLoss(nn.Module):
    """Logit-adjusted cross-entropy with mmdet's call convention; ``class_prior`` is a buffer (never updated).

    ``class_prior (C,)`` of the foreground categories with logits ``(N, C + 1)`` (a one-stage softmax head,
    background last and unadjusted: only the ratios between foreground priors matter then), or
    ``class_prior (K,)`` covering every column of ``(N, K)`` logits, background included.
    """

    use_sigmoid = False

    def __init__(
        self,
        class_prior: Sequence[float] | Tensor,
        *,
        tau: float = TAU,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        prior = torch.as_tensor(class_prior, dtype=torch.float32).flatten()
        if prior.numel() == 0 or not bool((prior > 0).all()):
            raise ValueError(
                f"LogitAdjustedLoss: class_prior must be non-empty and positive; got {prior.tolist()}"
            )
        self.tau = tau
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("class_prior", prior)

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        k = self.class_prior.numel()
        check_logits(logits, type(self).__name__, (k + 1, k))
        reduction = resolve_reduction(self.reduction, reduction_override)
        loss = logit_adjusted_cross_entropy(
            logits, labels.reshape(-1), self.class_prior, tau=self.tau, reduction="none"
        )
        return self.loss_weight * weight_reduce(
            loss, sample_weight(weight, loss.numel()), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_priors={self.class_prior.numel()}, tau={self.tau}, reduction={self.reduction!r}, "
            f"loss_weight={self.loss_weight}"
        )
