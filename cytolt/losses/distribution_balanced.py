"""Distribution-Balanced loss (Wu, Huang, Liu, Wang and Lin, "Distribution-Balanced Loss for Multi-Label
Classification in Long-Tailed Datasets", ECCV 2020, arXiv 2007.09654).

A multi-label loss on independent sigmoids with two changes to binary cross-entropy:

- **Re-balanced weighting.** Class-aware re-sampling draws a sample ``k`` through each class it holds, so a
  sample with a rare *and* a frequent label is over-drawn for the frequent one. With ``n_i`` the number of
  training samples holding class ``i``, the class-level sampling frequency is ``P^C_i = 1 / (C n_i)`` and the
  sample-level one ``P^I_k = (1 / C) sum_{j: y_kj = 1} 1 / n_j``; ``r_ki = P^C_i / P^I_k`` and the smoothed
  weight ``r_hat = alpha + sigmoid(beta (r - mu))`` multiplies every term of the sample (positives and
  negatives alike, as the authors' code does).
- **Negative-tolerant regularisation.** Each logit is shifted by a class bias ``nu_i = kappa b_i / lambda`` with
  ``b_i = log(p_i / (1 - p_i))`` the log-odds of the class prior ``p_i = n_i / N`` (rare classes start low, near
  their prior, instead of being pushed down by their many negatives), and the negative term is
  ``(1 / lambda) log(1 + exp(lambda (z + nu)))``: a steeper, smaller penalty that stops once a negative is
  below threshold.

The authors' COCO-MLT / VOC-MLT configs use both with a focal factor: the element loss is
``r_hat (1 - q)^gamma softplus(-(z + nu))`` for a positive and
``(r_hat / lambda) q^gamma softplus(lambda (z + nu))`` for a negative, ``q`` the sigmoid of the shifted (and, for
negatives, scaled) logit; the mean runs over all ``N x C`` elements.

Constants (defaults below) are those of the authors' public code, github.com/wutong16/DistributionBalancedLoss,
``configs/coco/LT_resnet50_pfc_DB.py``: ``map_param alpha=0.1, beta=10.0, gamma(mu)=0.2``, ``logit_reg
neg_scale(lambda)=2.0, init_bias(kappa)=0.05``, ``focal gamma=2``. In their ``ResampleLoss`` the bias is
``-log(N / n_i - 1) kappa / lambda`` added to the logit before the negatives are scaled by ``lambda``: that is the
form written above (after scaling, a negative's logit is ``lambda z + kappa b_i``). Adapted here, and why:

- The config's ``balance_param=2.0`` only multiplies the whole loss (a learning-rate scale); it is left to the
  module's ``loss_weight`` (default 1).
- A sample holding no class (a background row, or an empty tile) is never drawn by class-aware sampling, so the
  ratio is undefined (``0 / 0``); it gets ``r = 1``, the value of a single-label sample, for which instance and
  class sampling agree.
- A class present in every sample has an infinite prior log-odds; the prior is clamped to
  ``[1 / (N + 1), N / (N + 1)]``, which changes nothing for ``0 < n_i < N``.

Shapes: ``logits (N, C)``; ``targets (N, C)`` float in ``{0, 1}`` (several ones per row allowed);
``class_freq (C,)`` samples holding each class in the training set; ``num_samples`` ``N_train`` (scalar).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    stable_softplus,
    weight_reduce,
)

# Authors' COCO-MLT / VOC-MLT config (configs/{coco,voc}/LT_resnet50_pfc_DB.py): map_param and logit_reg.
ALPHA = 0.1
BETA = 10.0
MU = 0.2
NEG_SCALE = 2.0  # lambda
KAPPA = 0.05
# focal=dict(focal=True, gamma=2) in the same configs.
GAMMA = 2.0


def rebalance_weights(
    targets: Tensor, class_freq: Tensor, *, alpha: float = ALPHA, beta: float = BETA, mu: float = MU
) -> Tensor:
    """Smoothed re-balancing weights ``r_hat = alpha + sigmoid(beta (r - mu))``, ``(N, C)``.

    ``r_ki = (1 / n_i) / sum_{j: y_kj = 1} (1 / n_j)`` for every class column ``i`` of sample ``k``; a row with no
    positive gets ``r = 1`` (see the module docstring). Not differentiated: it depends on labels only.
    """
    inv = 1.0 / class_freq.to(targets.dtype)
    rate = (targets * inv).sum(dim=1, keepdim=True)
    r = torch.where(rate > 0, inv / rate.clamp_min(torch.finfo(targets.dtype).tiny), torch.ones_like(rate))
    return alpha + torch.sigmoid(beta * (r - mu))


def negative_tolerant_bias(
    class_freq: Tensor, num_samples: float | Tensor, *, kappa: float = KAPPA, neg_scale: float = NEG_SCALE
) -> Tensor:
    """Class bias ``nu_i = kappa log(p_i / (1 - p_i)) / lambda`` added to the logits, ``(C,)``.

    ``p_i = n_i / N`` clamped to ``[1 / (N + 1), N / (N + 1)]`` so that a class in every sample stays finite.
    """
    freq = class_freq if class_freq.is_floating_point() else class_freq.float()
    n = torch.as_tensor(num_samples, dtype=freq.dtype, device=freq.device)
    prior = torch.minimum(torch.maximum(freq / n, 1.0 / (n + 1)), n / (n + 1))
    return kappa * (torch.log(prior) - torch.log1p(-prior)) / neg_scale


def distribution_balanced_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    class_freq: Tensor,
    num_samples: float | Tensor,
    alpha: float = ALPHA,
    beta: float = BETA,
    mu: float = MU,
    neg_scale: float = NEG_SCALE,
    kappa: float = KAPPA,
    gamma: float = GAMMA,
    reduction: str = "mean",
) -> Tensor:
    """Distribution-Balanced loss (Wu et al. 2020) with the focal factor of the authors' configs.

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float in ``{0, 1}``; several positives per row allowed, all-zero rows allowed.
        class_freq: ``(C,)`` training samples holding each class, each ``>= 1`` (the module checks this once; the
            function trusts it so that it never reads a tensor value on the host).
        num_samples: training samples ``N_train`` (``>= max(class_freq)``), for the class prior.
        alpha, beta, mu: the smoothing ``r_hat = alpha + sigmoid(beta (r - mu))``; ``alpha=0.5, beta=0`` gives
            weights of 1.
        neg_scale: ``lambda``; ``1`` makes the negative term plain BCE.
        kappa: bias scale; ``0`` removes the bias.
        gamma: focal exponent; ``0`` removes the focal factor.
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` (over all elements) or ``"sum"``.
    """
    check_logits(logits, "distribution_balanced_loss", class_freq.numel())
    if targets.shape != logits.shape:
        raise ValueError(
            f"distribution_balanced_loss: targets must have the logits' shape {tuple(logits.shape)}; "
            f"got {tuple(targets.shape)}"
        )
    _check_hyper(neg_scale=neg_scale, gamma=gamma)
    targets = targets.to(logits.dtype)
    weights = rebalance_weights(targets, class_freq, alpha=alpha, beta=beta, mu=mu)
    bias = negative_tolerant_bias(class_freq, num_samples, kappa=kappa, neg_scale=neg_scale)
    return reduce_loss(_elements(logits, targets, weights, bias, neg_scale=neg_scale, gamma=gamma), reduction)


def _elements(
    logits: Tensor, targets: Tensor, weights: Tensor, bias: Tensor, *, neg_scale: float, gamma: float
) -> Tensor:
    """Element-wise DB loss ``(N, C)`` from the re-balancing weights ``(N, C)`` and the class bias ``(C,)``."""
    shifted = logits + bias.to(logits.dtype)
    # Positives see the shifted logit, negatives lambda times it; both then share one softplus / sigmoid.
    signed = torch.where(targets > 0, -shifted, neg_scale * shifted)
    loss = stable_softplus(signed)
    if gamma:
        loss = loss * torch.sigmoid(signed) ** gamma  # 1 - p_t of the positive, q of the negative
    return loss * weights * torch.where(targets > 0, 1.0, 1.0 / neg_scale)


def _check_hyper(*, neg_scale: float, gamma: float) -> None:
    if not neg_scale > 0:
        raise ValueError(f"neg_scale (lambda) must be > 0; got {neg_scale}")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")


def _as_freq(class_freq: Sequence[float] | Tensor, num_samples: float) -> Tensor:
    freq = torch.as_tensor(class_freq, dtype=torch.float32).flatten()
    if freq.numel() == 0 or not bool((freq >= 1).all()):
        raise ValueError(
            "DistributionBalancedLoss: class_freq must be non-empty, each class held by >= 1 training sample "
            f"(the re-balancing weight divides by it); got {freq.tolist()}"
        )
    if not num_samples >= float(freq.max()):
        raise ValueError(
            f"DistributionBalancedLoss: num_samples ({num_samples}) must be >= the largest class_freq "
            f"({float(freq.max()):g})"
        )
    return freq


class DistributionBalancedLoss(nn.Module):
    """Distribution-Balanced loss; ``class_freq (C,)`` and the bias ``(C,)`` are buffers (saved, never updated).

    ``forward(logits (N, C), labels, weight=None, avg_factor=None, reduction_override=None)``: ``labels`` is
    either multi-label ``targets (N, C)`` in ``{0, 1}`` or, as mmdet's one-stage heads call a loss, ``(N,)`` int64
    with ``C`` = background (a background row holds no class). ``weight`` ``(N,)``, ``(N, C)`` or ``(N * C,)``.
    """

    use_sigmoid = True

    def __init__(
        self,
        class_freq: Sequence[float] | Tensor,
        num_samples: float,
        *,
        alpha: float = ALPHA,
        beta: float = BETA,
        mu: float = MU,
        neg_scale: float = NEG_SCALE,
        kappa: float = KAPPA,
        gamma: float = GAMMA,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        _check_hyper(neg_scale=neg_scale, gamma=gamma)
        freq = _as_freq(class_freq, float(num_samples))
        self.num_samples = float(num_samples)
        self.alpha, self.beta, self.mu = alpha, beta, mu
        self.neg_scale, self.kappa, self.gamma = neg_scale, kappa, gamma
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("class_freq", freq)
        self.register_buffer(
            "bias", negative_tolerant_bias(freq, self.num_samples, kappa=kappa, neg_scale=neg_scale)
        )

    @property
    def num_classes(self) -> int:
        return self.class_freq.numel()

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
        if labels.dim() == 1:
            targets = expand_labels(labels, self.num_classes, logits.dtype)
        elif labels.shape == logits.shape:
            targets = labels.to(logits.dtype)
        else:
            raise ValueError(
                f"{type(self).__name__}: labels must be (N,) class indices or (N, C) targets like the logits "
                f"{tuple(logits.shape)}; got {tuple(labels.shape)}"
            )
        weights = rebalance_weights(targets, self.class_freq, alpha=self.alpha, beta=self.beta, mu=self.mu)
        loss = _elements(logits, targets, weights, self.bias, neg_scale=self.neg_scale, gamma=self.gamma)
        return self.loss_weight * weight_reduce(
            loss, element_weight(weight, loss.shape), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_samples={self.num_samples:g}, alpha={self.alpha}, "
            f"beta={self.beta}, mu={self.mu}, neg_scale={self.neg_scale}, kappa={self.kappa}, gamma={self.gamma}, "
            f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
