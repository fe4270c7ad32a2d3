"""Causal TDE for the cell classifier (Tang, Huang and Zhang, "Long-Tailed Classification by Keeping the Good and
Removing the Bad Momentum Causal Effect", NeurIPS 2020, arXiv 2009.12991).

Training ("de-confounded"): the linear head is replaced by the normalised multi-head classifier of
:class:`cytolt.losses.tde.CausalNormClassifier` (2 heads, scale tau 16, weight-norm offset gamma 1/32), which keeps
a moving average ``m <- mu m + mean_batch(x)`` of the features (mu 0.9). Test: the total direct effect,
``z_c - alpha (tau / K) sum_k cos(x_k, d_k) d_k . w_ck / (||w_ck|| + gamma)`` with ``d = m / ||m||`` and alpha 3
(the paper's ImageNet-LT value), removes the part of the logit the head direction explains.

Optimiser: SGD with momentum 0.9. The paper's causal graph takes the SGD momentum as the confounder that pushes
features towards the head direction; AdamW has a different bias, so this method trains with SGD + momentum. The
learning rate is ``options["sgd_lr"]`` (default 0.05, see :mod:`cytolt.classify.train`).

Adapted for cell crops: no background column, so no background-exempted inference (the classification form of
the paper); the classifier's mode decides: training mode gives the plain normalised logits the loss needs, eval mode
the TDE logits, which the saved model therefore returns in screening. alpha is a fixed default, not tuned on val.
"""

from __future__ import annotations

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec
from cytolt.losses.tde import ALPHA, GAMMA, MOMENTUM, NUM_HEADS, TAU, CausalNormClassifier

__all__ = ["TDE", "build_tde_head"]


def build_tde_head(
    feature_dim: int,
    num_classes: int,
    *,
    num_heads: int,
    tau: float,
    gamma: float,
    alpha: float,
    momentum: float,
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
        "alpha": float(TDE.option(ctx, "tde_alpha")),
        "momentum": MOMENTUM,
    }
    settings = {k: v for k, v in config.items() if k != "type"}
    return Head(build_tde_head(ctx.model.feature_dim, ctx.num_classes, **settings).to(ctx.device), config)


TDE = MethodSpec(
    name="tde",
    paper="Tang et al., Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal Effect, NeurIPS 2020",
    optimizer="sgd",
    build_head=_head,
    options={"tde_alpha": ALPHA},
)
