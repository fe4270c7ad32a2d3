"""Causal TDE for the cell classifier (Tang, Huang and Zhang, "Long-Tailed Classification by Keeping the Good and
Removing the Bad Momentum Causal Effect", NeurIPS 2020, arXiv 2009.12991).

Training ("de-confounded"): the linear head is replaced by the normalised multi-head classifier of
:class:`cytolt.losses.tde.CausalNormClassifier` (2 heads, scale tau 16, weight-norm offset gamma 1/32), which keeps
a moving average ``m <- mu m + mean_batch(x)`` of the features (mu 0.9). Test: the total direct effect,
``z_c - alpha (tau / K) sum_k cos(x_k, d_k) d_k . w_ck / (||w_ck|| + gamma)`` with ``d = m / ||m||``, removes the
part of the logit the head direction explains. alpha is chosen on the validation split by balanced accuracy over
0, 0.25, ..., 3 (ties: the smaller alpha, the smaller change), as the paper tunes it on val; without val it is 3,
the paper's ImageNet-LT value; ``options["tde_alpha"]`` fixes it.

Optimiser: SGD with momentum 0.9. The paper's causal graph takes the SGD momentum as the confounder that pushes
features towards the head direction; AdamW has a different bias, so this method trains with SGD + momentum. The
learning rate is ``options["sgd_lr"]`` (default 0.05, see :mod:`cytolt.classify.train`).

Adapted for cell crops: no background column, so no background-exempted inference (the classification form of
the paper); the classifier's mode decides: training mode gives the plain normalised logits the loss needs, eval mode
the TDE logits, which the saved model therefore returns in screening. The alpha sweep matters more here than on
ImageNet: the pooled ReLU features of a narrow net all lie in the positive orthant, close to their mean direction,
so alpha 3 can remove most of every logit (on one 20-epoch synthetic run it left the many-shot classes at 0).
"""

from __future__ import annotations

import numpy as np
import torch

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, eval_features
from cytolt.classify.methods.tau_norm import balanced_accuracy
from cytolt.losses.tde import ALPHA, GAMMA, MOMENTUM, NUM_HEADS, TAU, CausalNormClassifier, tde_logits

__all__ = ["ALPHA_GRID", "TDE", "build_tde_head", "sweep_alpha"]

ALPHA_GRID = tuple(0.25 * i for i in range(13))  # 0 .. 3, the paper's ImageNet-LT value at the top


def build_tde_head(
    feature_dim: int,
    num_classes: int,
    *,
    num_heads: int,
    tau: float,
    gamma: float,
    alpha: float,
    momentum: float,
    sweep_balanced_accuracy: dict | None = None,
) -> CausalNormClassifier:
    """The folder's builder for ``{"type": "tde", ...}`` (weight and mean feature from the file); also the method's
    own head, so the saved record and the trained head cannot disagree."""
    return CausalNormClassifier(
        feature_dim,
        num_classes,
        num_heads=int(num_heads),
        tau=float(tau),
        gamma=float(gamma),
        alpha=float(alpha),
        momentum=float(momentum),
        background_exempted=False,
    )


def _head(ctx: MethodContext) -> Head:
    config = {
        "type": "tde",
        "num_heads": NUM_HEADS,
        "tau": TAU,
        "gamma": GAMMA,
        "alpha": ALPHA,  # used at test only: set by finish()
        "momentum": MOMENTUM,
    }
    settings = {k: v for k, v in config.items() if k != "type"}
    return Head(build_tde_head(ctx.model.feature_dim, ctx.num_classes, **settings).to(ctx.device), config)


def sweep_alpha(
    features: torch.Tensor,
    labels: torch.Tensor,
    head: CausalNormClassifier,
    alphas: tuple[float, ...] = ALPHA_GRID,
) -> tuple[float, dict[float, float]]:
    """Best alpha by balanced accuracy of the TDE logits of ``features (N, D)``; ties go to the smaller alpha.

    Returns ``(alpha, {alpha: balanced accuracy})``.
    """
    if not alphas:
        raise ValueError("sweep_alpha: give at least one alpha")
    scores = {}
    for alpha in alphas:
        logits = tde_logits(
            features,
            head.weight.detach(),
            head.mean_feature,
            alpha=alpha,
            num_heads=head.num_heads,
            tau=head.tau,
            gamma=head.gamma,
        )
        scores[float(alpha)] = balanced_accuracy(logits.argmax(1), labels, head.out_features)
    best = max(scores.values())
    return min(a for a, v in scores.items() if v == best), scores


def _finish(ctx: MethodContext) -> Head:
    head = ctx.model.head
    if not isinstance(head, CausalNormClassifier):
        raise ValueError(f"tde: the model's head is {type(head).__name__}, not the causal-norm classifier")
    alpha = TDE.option(ctx, "tde_alpha")
    sweep = None
    if alpha is None and ctx.val is not None and len(ctx.val):
        features = eval_features(ctx.model, ctx.val, device=ctx.device)
        labels = torch.as_tensor(np.asarray(ctx.val.labels), device=features.device)
        alpha, sweep = sweep_alpha(features, labels, head)
    head.alpha = float(ALPHA if alpha is None else alpha)
    config = {
        "type": "tde",
        "num_heads": head.num_heads,
        "tau": head.tau,
        "gamma": head.gamma,
        "alpha": head.alpha,
        "momentum": head.momentum,
    }
    if sweep is not None:
        config["sweep_balanced_accuracy"] = {f"{a:.2f}": v for a, v in sweep.items()}
    return Head(head, config)


TDE = MethodSpec(
    name="tde",
    paper="Tang et al., Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal Effect, NeurIPS 2020",
    optimizer="sgd",
    build_head=_head,
    finish=_finish,
    options={"tde_alpha": None},
)
