"""Margin calibration, MARC (Wang, Zhang, Hou, Wu, Wang and Shinozaki, "Margin Calibration for Long-Tailed
Visual Recognition", ACML 2022, arXiv 2112.07225).

A linear classifier's margin to class ``c``'s boundary is ``(w_c . x + b_c) / ||w_c||``; the paper observes that
these margins, and the logits with them, grow with the class's training count. MARC calibrates them in a second
stage with two parameters per class,

    z'_c = omega_c z_c + beta_c ||w_c||

(``omega`` starts at 1, ``beta`` at 0, so training starts from the stage-1 model's logits), everything else frozen,
trained with cross-entropy on instance-sampled data. The loss is class re-weighted: the paper re-weights the
second stage's cross-entropy (its text, as summarised; the exact weights are not reproduced here), and cytolt uses
inverse class frequency ``w_c = n_c^-1``, normalised so that the mean weight over the training crops is 1 (in
expectation the same loss as class-balanced sampling, without repeating the rare crops).

Adapted for cell crops: ``||w_c||`` is read from the frozen classifier at each call (constant while it is frozen,
and nothing to keep in sync); no weight decay on omega and beta (calibration parameters must not shrink to 0).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.losses.cdb import cdb_cross_entropy

__all__ = [
    "MARC",
    "MARCHead",
    "WeightedCrossEntropy",
    "build_marc_head",
    "inverse_frequency_weights",
    "marc_logits",
]


def marc_logits(logits: Tensor, weight_norm: Tensor, omega: Tensor, beta: Tensor) -> Tensor:
    """``omega_c z_c + beta_c ||w_c||``: ``logits (N, K)``, ``weight_norm``, ``omega``, ``beta`` ``(K,)``."""
    k = logits.size(-1)
    if not (weight_norm.numel() == omega.numel() == beta.numel() == k):
        raise ValueError(
            f"marc_logits: {k} logits per row need {k} weight norms, omegas and betas; got "
            f"{weight_norm.numel()}, {omega.numel()}, {beta.numel()}"
        )
    return omega.reshape(1, k) * logits + beta.reshape(1, k) * weight_norm.reshape(1, k)


class MARCHead(nn.Module):
    """A frozen linear classifier with MARC's per-class ``omega`` (init 1) and ``beta`` (init 0) parameters.

    ``forward(x (N, D)) -> (N, K)``; the classifier's parameters get ``requires_grad=False``.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        for p in linear.parameters():
            p.requires_grad_(False)
        k = linear.out_features
        self.omega = nn.Parameter(torch.ones(k, device=linear.weight.device))
        self.beta = nn.Parameter(torch.zeros(k, device=linear.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        norms = self.linear.weight.detach().norm(dim=1)
        return marc_logits(self.linear(x), norms, self.omega, self.beta)

    def extra_repr(self) -> str:
        return f"num_classes={self.omega.numel()}"


def inverse_frequency_weights(counts: Tensor | list[int], *, power: float = 1.0) -> Tensor:
    """``(K,)`` class weights ``n_c^-power``, normalised so that ``sum_c n_c w_c = N`` (mean 1 over the crops);
    0 for a class without crops (it never weighs a loss term)."""
    n = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if n.numel() == 0 or bool((n < 0).any()) or not float(n.sum()) > 0:
        raise ValueError(
            f"inverse_frequency_weights: counts must be >= 0 with a positive total; got {n.tolist()}"
        )
    w = torch.where(n > 0, n.clamp_min(1) ** -power, torch.zeros_like(n))
    return (w * n.sum() / (w * n).sum()).float()


class WeightedCrossEntropy(nn.Module):
    """``mean_i w[y_i] CE(z_i, y_i)`` with fixed class weights in a buffer (``cdb_cross_entropy``'s rule)."""

    def __init__(self, class_weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("class_weights", torch.as_tensor(class_weights, dtype=torch.float32).flatten())

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return cdb_cross_entropy(logits, labels, self.class_weights)


def _head(ctx: MethodContext) -> Head:
    return Head(MARCHead(copy.deepcopy(stage_one_linear(ctx, "marc"))), {"type": "marc"})


def _loss(ctx: MethodContext) -> nn.Module:
    weights = inverse_frequency_weights(ctx.counts, power=float(MARC.option(ctx, "weight_power")))
    return WeightedCrossEntropy(weights.to(ctx.device))


def build_marc_head(feature_dim: int, num_classes: int) -> nn.Module:
    """The folder's builder for ``{"type": "marc"}`` (weights, omega and beta from the file)."""
    return MARCHead(nn.Linear(feature_dim, num_classes))


MARC = MethodSpec(
    name="marc",
    paper="Wang et al., Margin Calibration for Long-Tailed Visual Recognition, ACML 2022",
    stage=2,
    sampler="instance",
    trains="head",
    weight_decay=0.0,
    build_head=_head,
    build_loss=_loss,
    options={"weight_power": 1.0},
)
