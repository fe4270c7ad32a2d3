"""Gumbel activation and its loss, GOL (Alexandridis et al., "Long-tailed Instance Segmentation using Gumbel
Optimized Loss", ECCV 2022, arXiv 2207.10936).

Each class's probability is the Gumbel CDF of its logit, ``p = exp(-exp(-z))``, instead of the sigmoid. The
Gumbel CDF is asymmetric: its left tail falls doubly exponentially (``p(-2) = 6.2e-4`` against the sigmoid's
0.119) while its right tail ``1 - p ~ exp(-z)`` is the sigmoid's. The authors argue that on long-tailed data,
where almost every sample is a negative for almost every class, the scores follow an extreme-value law rather
than a logistic one, and that this activation keeps rare classes from being over-suppressed. Training is binary
cross-entropy on ``p`` with the logits clamped to ``[-4, 10]`` (the authors' training code; inference uses the
raw logits). The classifier bias starts at ``b = -log(-log(pi))``, which makes every initial probability ``pi``.

Computed in log space: ``log p = -exp(-z)`` and ``log(1 - p) = log(-expm1(-exp(-z)))``, so
``BCE = y exp(-z) - (1 - y) log(1 - p)`` never takes the log of a rounded probability.

Shapes: ``logits (N, C)``; ``targets (N, C)`` float one-hot, background rows all zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)

# Training clamp of the logits, from the authors' code (Alexandridis et al. 2022, gumbel_cross_entropy):
# below -4 a positive's loss exp(4) = 55 is large already; above 10, 1 - p < 5e-5.
GUMBEL_CLAMP = (-4.0, 10.0)
# Above this, log(1 - p) is its series -z - exp(-z) / 2: log(1 - exp(-u)) = log(u) - u/2 + u^2/24 - ... with
# u = exp(-z) < 2.1e-9, so the first dropped term is below 2e-19.
_SERIES_FROM = 20.0


def gumbel_cdf(logits: Tensor) -> Tensor:
    """The Gumbel activation ``p = exp(-exp(-z))``, element-wise (no clamp: what the authors score with)."""
    return torch.exp(-torch.exp(-logits))


def gumbel_log_probs(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p, log(1 - p))`` of the Gumbel activation, element-wise, without rounding ``p``.

    ``log p = -exp(-z)``; ``log(1 - p) = log(-expm1(-exp(-z)))``, switching to its series ``-z - exp(-z) / 2``
    above ``z = 20``. Both are finite with finite gradients for every finite ``z``: below
    ``1 - log(max float)`` (-87.7 in float32) ``z`` is held there, where ``-log p`` is 1.25e38 already. Half
    precision is computed in float32.
    """
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()  # half: in float32
    # exp(-z) stays finite above this floor (-87.7 in float32), so no 0 * inf appears in a value or a gradient;
    # below it -log p is beyond 1e38 anyway and 1 - p is exactly 1.
    z_low = z.clamp(min=1.0 - math.log(torch.finfo(z.dtype).max))
    log_p = -torch.exp(-z_low)
    log_q_middle = torch.log(-torch.expm1(-torch.exp(-z_low.clamp(max=_SERIES_FROM))))
    log_q_tail = -z - 0.5 * torch.exp(-z.clamp(min=_SERIES_FROM))
    return log_p, torch.where(z > _SERIES_FROM, log_q_tail, log_q_middle)


def gumbel_log_odds(logits: Tensor) -> Tensor:
    """``log(p / (1 - p))`` of the Gumbel activation: ``sigmoid(gumbel_log_odds(z)) == gumbel_cdf(z)``.

    Lets code that applies a sigmoid (mmdet's dense-head post-processing) score with the Gumbel activation.
    """
    log_p, log_q = gumbel_log_probs(logits)
    return log_p - log_q


def gumbel_bias_init(prior: float) -> float:
    """Bias ``b = -log(-log(pi))`` whose Gumbel probability is ``pi``: ``gumbel_cdf(b) == pi``.

    The Gumbel counterpart of the sigmoid prior ``-log((1 - pi) / pi)`` (Lin et al. 2017). ``pi = 0.01`` gives
    -1.527 (sigmoid: -4.595); the authors' LVIS bias -2 is ``pi = exp(-e^2) = 6.2e-4``.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"gumbel_bias_init: prior must be in (0, 1); got {prior}")
    return -math.log(-math.log(prior))


def gumbel_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    clamp: tuple[float, float] | None = GUMBEL_CLAMP,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy on the Gumbel activation, ``-(y log p + (1 - y) log(1 - p))``, ``p = exp(-exp(-z))``.

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float in ``[0, 1]`` (one-hot; background rows all zero).
        clamp: ``(min, max)`` applied to the logits first (default ``(-4, 10)``, the authors' training clamp;
            outside it the gradient is zero, as there); ``None`` for none.
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    z = logits.clamp(*clamp) if clamp is not None else logits
    log_p, log_q = gumbel_log_probs(z)
    loss = -(targets * log_p + (1 - targets) * log_q)
    return reduce_loss(loss, reduction)


class GumbelLoss(nn.Module):
    """GOL's Gumbel binary cross-entropy with mmdet's one-stage call convention; no state.

    ``activation(logits)`` is the score a detector trained with it must use at test time (``gumbel_cdf``),
    not the sigmoid.

    Args:
        num_classes: when given, ``forward`` checks that the logits have ``C`` columns; ``None`` takes any ``C``.
        clamp: training clamp of the logits, ``(min, max)`` or ``None``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        loss_weight: multiplies the loss.
    """

    use_sigmoid = True

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        clamp: tuple[float, float] | None = GUMBEL_CLAMP,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if clamp is not None:
            low, high = (float(v) for v in clamp)
            if not low < high:
                raise ValueError(f"GumbelLoss: clamp must be (min, max) with min < max; got {tuple(clamp)}")
            clamp = (low, high)
        self.num_classes = num_classes
        self.clamp = clamp
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight

    @staticmethod
    def activation(logits: Tensor) -> Tensor:
        """Test-time scores ``exp(-exp(-z))`` (no clamp)."""
        return gumbel_cdf(logits)

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
        targets = expand_labels(labels, logits.size(1), logits.dtype)
        loss = gumbel_loss(logits, targets, clamp=self.clamp, reduction="none")
        return self.loss_weight * weight_reduce(
            loss, element_weight(weight, loss.shape), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, clamp={self.clamp}, reduction={self.reduction!r}, "
            f"loss_weight={self.loss_weight}"
        )
