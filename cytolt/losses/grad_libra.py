"""Grad-Libra loss, a documented RECONSTRUCTION (Liu et al., "Sample Hardness Based Gradient Loss for Long-Tailed
Cervical Cell Detection", MICCAI 2022, arXiv 2208.03779).

Only the paper's abstract is public and there is no public code. The abstract says gradients are used to
"dynamically calibrate the degree of hardness of each sample for different categories" and to "re-balance the
gradients of positive and negative samples". cytolt's reconstruction (spec: ``METHODS.md``) is:

- sample hardness ``g_ij = |p_ij - y_ij|``, the BCE gradient with respect to the logit;
- per-category state accumulated over iterations: gradient sums ``G+_j``, ``G-_j`` and running means of the
  positive / negative hardness ``gbar+_j``, ``gbar-_j``;
- category balance ``r_j = clamp(G+_j / G-_j, 0, 1)``, positive weight ``1 + alpha (1 - s_j)``, negative
  weight ``s_j = sigmoid(gamma (r_j - mu))`` (EQLv2's mapping);
- calibrated hardness ``h_ij = g_ij / gbar_j`` (mean of the same sign), raised to ``beta``, detached;
- loss ``sum_ij w_ij h_ij^beta BCE(z_ij, y_ij) / avg_factor``.

Two changes to that spec, both measured on the synthetic TCT benchmark (docs/losses/gradient_balanced.md):

- the base loss is focal-modulated, ``l0_ij = alpha_t g_ij^focal_gamma BCE_ij`` (Lin et al. 2017), because on a
  dense one-stage head the BCE form above lets ~10^4 easy negatives per positive swamp the loss (a RetinaNet-R18
  trained with it reached AP 0.24 and AP 0 on every tail class where focal loss reached 0.50); ``focal_gamma=0,
  focal_alpha=None`` gives the spec's BCE form exactly;
- ``gbar_j`` is the mean hardness weighted by the base loss, ``sum l0 g / sum l0``, so that ``h^beta`` (beta=1)
  redistributes a category-sign's loss from its easy to its hard samples without changing its total; with a plain
  mean, heavy-tailed negative hardness multiplied the negative total by ``E[g^3] / (E[g] E[g^2])``, tens of times.

Glossary: ``N`` samples (anchors, points), ``C`` foreground categories, ``y`` one-hot targets with all-zero
background rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cytolt.losses._common import (
    all_reduce_sum_,
    check_logits,
    element_weight,
    reduce_loss,
    resolve_reduction,
    weight_reduce,
)
from cytolt.losses.eqlv2 import eqlv2_weights

# alpha 4, gamma 12, mu 0.8: EQLv2's mapping (Tan et al. 2021), which METHODS.md prescribes for the reconstruction.
ALPHA = 4.0
GAMMA = 12.0
MU = 0.8
# beta 1: a gradient of order g^2 per element, between BCE (g) and focal loss with gamma 2 (about g^3 on easy
# samples); a cytolt choice, not the paper's (it publishes none). To be confirmed by the synthetic-TCT ablation.
BETA = 1.0
# Focal modulation of the base loss: gamma 2, alpha 0.25 (Lin et al., ICCV 2017, RetinaNet's defaults).
FOCAL_GAMMA = 2.0
FOCAL_ALPHA: float | None = 0.25
# Momentum of the running hardness means: BatchNorm's default, i.e. an average over about the last ten
# iterations in which the category-sign occurred; hardness falls as training proceeds, so a cumulative mean
# would lag.
MOMENTUM = 0.1
# How gbar averages hardness: weighted by the base loss (cytolt's default) or plainly (the spec's form).
HARDNESS_MEANS = ("loss", "plain")


def calibrated_hardness(
    logits: Tensor,
    targets: Tensor,
    pos_hardness: Tensor,
    neg_hardness: Tensor,
    *,
    beta: float = BETA,
) -> Tensor:
    """Detached ``h_ij^beta = (g_ij / gbar_j)^beta``, ``(N, C)``, with ``g = |sigmoid(z) - y|``.

    ``gbar_j`` is ``pos_hardness[j]`` on positives and ``neg_hardness[j]`` on negatives; a category-sign with no
    statistics yet (``gbar == 0``) gets ``h = 1``.
    """
    with torch.no_grad():
        return _calibrate((torch.sigmoid(logits) - targets).abs(), targets, pos_hardness, neg_hardness, beta)


def _calibrate(g: Tensor, targets: Tensor, pos_hardness: Tensor, neg_hardness: Tensor, beta: float) -> Tensor:
    """``(g / gbar)^beta`` from the hardness ``g (N, C)`` (no grad); 1 where ``gbar`` is unknown (0)."""
    gbar = (pos_hardness * targets + neg_hardness * (1 - targets)).to(g.dtype)
    known = gbar > 0
    h = torch.where(known, g / torch.where(known, gbar, torch.ones_like(gbar)), torch.ones_like(g))
    return h if beta == 1 else h**beta


def grad_libra_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    pos_grad: Tensor,
    neg_grad: Tensor,
    pos_hardness: Tensor,
    neg_hardness: Tensor,
    alpha: float = ALPHA,
    gamma: float = GAMMA,
    mu: float = MU,
    beta: float = BETA,
    focal_gamma: float = FOCAL_GAMMA,
    focal_alpha: float | None = FOCAL_ALPHA,
    reduction: str = "mean",
) -> Tensor:
    """Grad-Libra loss given its state (reconstruction, see the module docstring).

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N, C)`` float one-hot, background rows all zero.
        pos_grad, neg_grad: ``(C,)`` accumulated positive / negative gradient sums ``G+``, ``G-``.
        pos_hardness, neg_hardness: ``(C,)`` running mean hardness ``gbar+``, ``gbar-`` (0: unknown).
        alpha, gamma, mu: EQLv2 mapping of ``r = clamp(G+ / G-, 0, 1)`` to positive / negative weights.
        beta: exponent of the calibrated hardness (0: no hardness weighting).
        focal_gamma, focal_alpha: focal modulation of the base loss (0 and None: plain BCE).
        reduction: ``"none"`` (element-wise ``(N, C)``), ``"mean"`` or ``"sum"``.
    """
    loss = _weights(logits, targets, pos_grad, neg_grad, alpha, gamma, mu)
    loss = loss * calibrated_hardness(logits, targets, pos_hardness, neg_hardness, beta=beta)
    loss = loss * base_loss(logits, targets, focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    return reduce_loss(loss, reduction)


def base_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    focal_gamma: float = FOCAL_GAMMA,
    focal_alpha: float | None = FOCAL_ALPHA,
) -> Tensor:
    """``alpha_t |p - y|^focal_gamma BCE(z, y)``, ``(N, C)``: the focal form (plain BCE with 0 and None)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if focal_gamma:
        loss = loss * (torch.sigmoid(logits) - targets).abs().pow(focal_gamma)
    if focal_alpha is not None:
        loss = loss * (focal_alpha * targets + (1 - focal_alpha) * (1 - targets))
    return loss


def _weights(
    logits: Tensor, targets: Tensor, pos_grad: Tensor, neg_grad: Tensor, alpha: float, gamma: float, mu: float
) -> Tensor:
    """Category balance weights ``w (N, C)`` (detached)."""
    pos_w, neg_w = eqlv2_weights(
        pos_grad.detach(), neg_grad.detach(), gamma=gamma, mu=mu, alpha=alpha, clamp=True
    )
    return (pos_w * targets + neg_w * (1 - targets)).to(logits.dtype)


def _positive_and_total(
    q: Tensor, index: Tensor, foreground: Tensor, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Per-category sums of ``q (N, C)`` over the positive elements and over all elements, ``(C,)`` each.

    Each row has at most one positive (``index``: its category, ``foreground``: 0 on background rows), so the
    positive sums take a gather and an ``index_add`` of ``N`` values instead of a product over all ``N x C``.
    """
    at_label = q.gather(1, index.reshape(-1, 1)).reshape(-1) * foreground
    return q.new_zeros(num_classes).index_add_(0, index, at_label), q.sum(0)


def _coefficients(
    g: Tensor, is_pos: Tensor, weight_by_sign: Tensor, scale_by_sign: Tensor, known: Tensor, beta: float
) -> Tensor:
    """``w_ij h_ij^beta`` as ``g^beta A_ij + B_ij``: ``A = w gbar^-beta``, ``B = 0`` where ``gbar`` is known;
    ``A = 0``, ``B = w`` (``h = 1``) where it is not; ``A``, ``B`` taken per category and sign."""
    a = torch.where(known, weight_by_sign * scale_by_sign, 0.0).to(g.dtype)
    b = torch.where(known, 0.0, weight_by_sign).to(g.dtype)
    g_beta = g if beta == 1 else g**beta
    return g_beta * torch.where(is_pos, a[0], a[1]) + torch.where(is_pos, b[0], b[1])


class GradLibraLoss(nn.Module):
    """Grad-Libra (reconstruction) with its state in buffers, mmdet one-stage call convention.

    Buffers (all ``(C,)``, saved in ``state_dict``):

    - ``pos_grad``, ``neg_grad``: accumulated gradient the loss delivered to positive / negative logits,
      ``sum w h^beta |dl0/dz|`` times the label weight (``|dl0/dz| = g`` for the BCE base; no reduction
      divisor, as EQLv2 accumulates);
    - ``pos_hardness``, ``neg_hardness``: running means ``gbar`` of ``g`` over positives / negatives, weighted
      by the base loss ``l0`` (exponential, ``momentum``; the first observation is taken as is), or plain means
      with ``hardness_mean="plain"`` (the spec's form, for the ablation);
    - ``pos_count``, ``neg_count``: weighted number of positive / negative elements seen.

    A training-mode ``forward`` first folds the batch's hardness into the running means (so the batch is
    calibrated against statistics that include it), computes the loss with the balance weights of the state
    from before the call, then adds the call's gradients to ``G+``, ``G-``. Statistics are detached and, under
    DDP, summed over processes (one ``all_reduce``). Eval mode reads the state and never changes it.
    ``reset()`` returns to the fresh state, in which every weight is 1 (plain BCE when ``beta`` is 0).
    """

    use_sigmoid = True

    def __init__(
        self,
        num_classes: int,
        *,
        alpha: float = ALPHA,
        gamma: float = GAMMA,
        mu: float = MU,
        beta: float = BETA,
        focal_gamma: float = FOCAL_GAMMA,
        focal_alpha: float | None = FOCAL_ALPHA,
        momentum: float = MOMENTUM,
        hardness_mean: str = "loss",
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"GradLibraLoss: momentum must be in (0, 1]; got {momentum}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.gamma = gamma
        self.mu = mu
        self.beta = beta
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.momentum = momentum
        if hardness_mean not in HARDNESS_MEANS:
            raise ValueError(
                f"GradLibraLoss: hardness_mean must be one of {HARDNESS_MEANS}; got {hardness_mean!r}"
            )
        self.hardness_mean = hardness_mean
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        for name in ("pos_grad", "neg_grad", "pos_hardness", "neg_hardness", "pos_count", "neg_count"):
            self.register_buffer(name, torch.zeros(num_classes))

    def weights(self) -> tuple[Tensor, Tensor]:
        """Current category balance ``(pos_w (C,), neg_w (C,))``."""
        return eqlv2_weights(
            self.pos_grad, self.neg_grad, gamma=self.gamma, mu=self.mu, alpha=self.alpha, clamp=True
        )

    def reset(self) -> None:
        """Forget every statistic."""
        for buf in self.buffers():
            buf.zero_()

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        c = self.num_classes
        check_logits(logits, type(self).__name__, c)
        reduction = resolve_reduction(self.reduction, reduction_override)
        labels = labels.reshape(-1)
        is_pos = labels.reshape(-1, 1) == torch.arange(c, device=labels.device)
        targets = is_pos.to(logits.dtype)
        el_weight = element_weight(weight, logits.shape)
        # grad_libra_loss() with every (N, C) quantity computed once; the step's statistics reuse them detached.
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        g_live = (torch.sigmoid(logits) - targets).abs()
        g = g_live.detach()
        base = bce * g_live**self.focal_gamma if self.focal_gamma else bce  # l0 / alpha_t
        with torch.no_grad():
            alpha_t = (
                torch.where(is_pos, self.focal_alpha, 1 - self.focal_alpha).to(logits.dtype)
                if self.focal_alpha is not None
                else None
            )
            if self.training:
                batch = self._batch_statistics(labels, g, bce.detach(), base.detach(), alpha_t, el_weight)
                self._update_hardness(batch)
            weight_by_sign, scale_by_sign, known = self._sign_factors()
            coef = _coefficients(g, is_pos, weight_by_sign, scale_by_sign, known, self.beta)  # w h^beta
            if alpha_t is not None:
                coef = coef * alpha_t
            if el_weight is not None:
                coef = coef * el_weight
        loss = self.loss_weight * weight_reduce(coef * base, None, reduction, avg_factor)
        if self.training:
            with torch.no_grad():  # G += w gbar^-beta sum g^beta |dl0/dz|, per category and sign
                rows = batch.view(2, 4, -1)  # (sign, quantity, C); quantity 3 is sum g^beta |dl0/dz|
                increment = weight_by_sign * scale_by_sign * rows[:, 3]
                self.pos_grad += increment[0]
                self.neg_grad += increment[1]
        return loss

    def _sign_factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(2, C)`` each, positives then negatives: balance weight ``w``, ``gbar^-beta`` (1 where unknown) and
        whether ``gbar`` is known."""
        weight_by_sign = torch.stack(self.weights())
        gbar = torch.stack([self.pos_hardness, self.neg_hardness])
        known = gbar > 0
        scale_by_sign = torch.where(known, gbar, torch.ones_like(gbar)) ** -self.beta
        return weight_by_sign, scale_by_sign, known

    @torch.no_grad()
    def _batch_statistics(
        self,
        labels: Tensor,
        g: Tensor,
        bce: Tensor,
        base: Tensor,
        alpha_t: Tensor | None,
        el_weight: Tensor | None,
    ) -> Tensor:
        """``(8, C)``: for positives, then negatives: weighted count, base-loss mass ``sum l0``, ``sum l0 g`` and
        ``sum g^beta |dl0/dz|`` (all times the label weight).

        ``|d(w h^beta l0)/dz| = w gbar^-beta g^beta |dl0/dz|`` with ``w`` and ``gbar`` constant per category and
        sign, so the gradient sums need no second all-reduce once the means are known. For the focal base
        ``l0 = alpha_t g^fg BCE`` (``g = 1 - p_t``): ``|dl0/dz| = alpha_t g^fg (g + fg (1 - g) BCE)``.
        ``base`` is ``g^fg BCE`` (``l0`` without ``alpha_t``).
        """
        c = self.num_classes
        modulator = g**self.focal_gamma if self.focal_gamma else None
        grad_no_alpha = g + self.focal_gamma * (1 - g) * bce if self.focal_gamma else g
        if modulator is not None:
            grad_no_alpha = grad_no_alpha * modulator
        l0, dl0 = (base, grad_no_alpha) if alpha_t is None else (base * alpha_t, grad_no_alpha * alpha_t)
        third = dl0 * g if self.beta == 1 else dl0 * g**self.beta
        # "plain": gbar = sum g / count, the spec's mean; "loss": sum l0 g / sum l0 (the module docstring's why)
        quantities = [torch.ones_like(g), g, third] if self.hardness_mean == "plain" else [l0, l0 * g, third]
        index = labels.clamp(max=c - 1)
        foreground = (labels < c).to(g.dtype)
        if el_weight is not None:
            quantities = [q * el_weight for q in quantities]
            counts = _positive_and_total(el_weight.expand_as(g), index, foreground, c)
        else:  # unweighted counts follow from the labels alone
            counts = (
                g.new_zeros(c).index_add_(0, index, foreground),
                g.new_full((c,), float(labels.numel())),
            )
        sums = [counts] + [_positive_and_total(q, index, foreground, c) for q in quantities]
        pos = torch.stack([p for p, _ in sums])
        neg = torch.stack([t for _, t in sums]) - pos
        return all_reduce_sum_(torch.cat([pos, neg]).to(self.pos_grad.dtype))

    @torch.no_grad()
    def _update_hardness(self, batch: Tensor) -> None:
        m = self.momentum
        for count, mean, n, mass, s in (
            (self.pos_count, self.pos_hardness, batch[0], batch[1], batch[2]),
            (self.neg_count, self.neg_hardness, batch[4], batch[5], batch[6]),
        ):
            present = (n > 0) & (mass > 0)
            batch_mean = s / torch.where(present, mass, torch.ones_like(mass))
            blended = torch.where(count > 0, (1 - m) * mean + m * batch_mean, batch_mean)
            mean.copy_(torch.where(present, blended, mean))
            count += n

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, gamma={self.gamma}, mu={self.mu}, "
            f"beta={self.beta}, focal_gamma={self.focal_gamma}, focal_alpha={self.focal_alpha}, momentum={self.momentum}, hardness_mean={self.hardness_mean!r}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
