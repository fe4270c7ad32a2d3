"""tau-normalised classifier (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020, arXiv 1910.09217).

A training-free second stage: each class's weight row of the stage-1 linear classifier becomes
``w_c / ||w_c||^tau`` (:func:`cytolt.calibration.tau_norm`) and the bias is dropped, as Kang et al. do. Instance
sampling gives frequent classes larger weight norms; tau between 0 (unchanged) and 1 (unit norms) evens them out.
tau is chosen on the validation split by balanced accuracy over the grid 0, 0.1, ..., 2 (ties: the smaller tau,
the smaller change); ``options["tau"]`` fixes it instead. Adapted for cell crops: the sweep criterion is
balanced accuracy (Kang et al. use overall accuracy on a balanced val set, which is the same quantity there).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cytolt.calibration import tau_norm
from cytolt.classify.methods.spec import (
    Head,
    MethodContext,
    MethodSpec,
    eval_features,
    per_class_recall,
    stage_one_linear,
)

__all__ = ["TAU_GRID", "TAU_NORM", "balanced_accuracy", "sweep_tau", "tau_norm_linear"]

# 0 to 2 in steps of 0.1: Kang et al. sweep tau in [0, 1]; beyond 1 the rare classes' rows get the larger norms.
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))


def tau_norm_linear(linear: nn.Linear, tau: float) -> nn.Linear:
    """A bias-free ``nn.Linear`` with ``tau_norm(linear.weight, tau)`` (a new layer; ``linear`` is unchanged)."""
    layer = nn.Linear(linear.in_features, linear.out_features, bias=False).to(linear.weight.device)
    with torch.no_grad():
        layer.weight.copy_(tau_norm(linear.weight.detach(), tau))
    return layer


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean per-class recall over the classes that have samples."""
    recall = per_class_recall(predicted, labels, num_classes)
    return float(recall[~recall.isnan()].mean())


def sweep_tau(
    features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, taus: tuple[float, ...] = TAU_GRID
) -> tuple[float, dict[float, float]]:
    """Best tau by balanced accuracy of ``argmax(features @ tau_norm(weight, tau).T)``; ties go to the smaller tau.

    Args:
        features: ``(N, D)`` validation features; labels ``(N,)``; weight ``(K, D)``.

    Returns ``(tau, {tau: balanced accuracy})``.
    """
    if not taus:
        raise ValueError("sweep_tau: give at least one tau")
    scores = {}
    for tau in taus:
        predicted = (features @ tau_norm(weight, tau).t()).argmax(1)
        scores[float(tau)] = balanced_accuracy(predicted, labels, weight.shape[0])
    best = max(scores.values())
    return min(t for t, s in scores.items() if s == best), scores


def _finish(ctx: MethodContext) -> Head:
    linear = stage_one_linear(ctx, "tau_norm")
    tau = TAU_NORM.option(ctx, "tau")
    sweep = None
    if tau is None:
        if ctx.val is None or len(ctx.val) == 0:
            raise ValueError("tau_norm needs a validation set to choose tau (val=...), or options['tau']")
        features = eval_features(ctx.model, ctx.val, device=ctx.device)
        labels = torch.as_tensor(np.asarray(ctx.val.labels), device=features.device)
        tau, sweep = sweep_tau(features, labels, linear.weight.detach())
    config = {"type": "tau_norm", "tau": float(tau)}
    if sweep is not None:
        config["sweep_balanced_accuracy"] = {f"{t:.1f}": s for t, s in sweep.items()}
    return Head(tau_norm_linear(linear, float(tau)), config)


def build_tau_norm_head(
    feature_dim: int, num_classes: int, *, tau: float, sweep_balanced_accuracy: dict | None = None
) -> nn.Module:
    """The folder's builder for ``{"type": "tau_norm", "tau": ...}``: a bias-free linear layer (its weights, already
    normalised, come from the file)."""
    return nn.Linear(feature_dim, num_classes, bias=False)


TAU_NORM = MethodSpec(
    name="tau_norm",
    paper="Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020 (tau-norm)",
    stage=2,
    trains="none",
    finish=_finish,
    options={"tau": None},
)
