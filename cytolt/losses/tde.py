"""Causal TDE (Tang, Huang and Zhang, "Long-Tailed Classification by Keeping the Good and Removing the Bad
Momentum Causal Effect", NeurIPS 2020, arXiv 2009.12991).

The paper's causal graph: SGD with momentum drives the features ``x`` towards a head direction ``d`` (the
"momentum" confounder), which biases predictions to head classes. Training ("de-confounded") uses a normalised
multi-head classifier and keeps a moving average of the features; test time removes the direct effect of ``d``
(the total direct effect, TDE):

- **multi-head normalised classifier**: ``x`` and each class weight ``w_c`` are split into ``K`` heads (``K = 2``);
  ``z_c = (tau / K) sum_k  x_k . w_ck / (||x_k|| (||w_ck|| + gamma))`` with ``tau = 16``, ``gamma = 1 / 32``.
- **moving-average feature** ``m <- mu m + mean_batch(x)`` (``mu = 0.9``), in training; ``d_k = m_k / ||m_k||``.
  The authors' detection code averages the foreground RoIs only, with ``mu = 0.9998`` and ``alpha = 1.5``
  (:data:`DETECTION_MOMENTUM`, :data:`DETECTION_ALPHA`).
- **TDE logits** at test: ``z_c - alpha (tau / K) sum_k cos(x_k, d_k) d_k . w_ck / (||w_ck|| + gamma)``
  (``alpha = 3``): the part of the logit that the head direction explains is subtracted.
- **background-exempted inference** (the paper's detection form): TDE would also move the background score, which
  is not a long-tail class; the background probability ``p_0`` is taken from the plain logits and the foreground
  from the TDE logits, ``p_c = (1 - p_0) softmax(z^TDE[:C])_c`` (the foreground / background ratio is frozen).

The causal argument assumes SGD with momentum (the confounder is the momentum term); an optimiser without it
(AdamW) has a different bias, so configs that use TDE train with SGD + momentum.

Shapes: ``x (N, D)``; ``weight (K_out, D)``, ``K_out = C + 1`` in a softmax RoI head (background last);
``mean_feature (D,)``; ``D`` divisible by the number of heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cytolt.losses._common import all_reduce_sum_

__all__ = [
    "CausalNormClassifier",
    "background_exempted_probs",
    "causal_norm_logits",
    "tde_logits",
]

TAU = 16.0  # logit scale (the paper's tau)
GAMMA = 1.0 / 32.0  # weight-norm offset: ||w|| + gamma in the denominator
ALPHA = 3.0  # strength of the counterfactual subtraction (ImageNet-LT; tuned on val in the paper)
MOMENTUM = 0.9  # of the moving-average feature, the SGD momentum it mirrors
# The authors' LVIS (detection) code: alpha 1.5, and mu = 1 - (1 - 0.9) * 0.002 = 0.9998 ("scaled by the learning
# rate"), averaging foreground RoI features only.
DETECTION_ALPHA = 1.5
DETECTION_MOMENTUM = 1.0 - (1.0 - 0.9) * 0.002
NUM_HEADS = 2


def _heads(t: Tensor, num_heads: int) -> Tensor:
    """``(..., D)`` -> ``(..., K, D / K)``."""
    if t.size(-1) % num_heads:
        raise ValueError(f"TDE: feature dimension {t.size(-1)} is not divisible by {num_heads} heads")
    return t.reshape(*t.shape[:-1], num_heads, t.size(-1) // num_heads)


def _unit(t: Tensor) -> Tensor:
    return t / t.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(t.dtype).tiny)


def _normed_weight(weight: Tensor, num_heads: int, gamma: float) -> Tensor:
    w = _heads(weight, num_heads)  # (K_out, K, d)
    return w / (w.norm(dim=-1, keepdim=True) + gamma)


def causal_norm_logits(
    x: Tensor, weight: Tensor, *, num_heads: int = NUM_HEADS, tau: float = TAU, gamma: float = GAMMA
) -> Tensor:
    """The multi-head normalised classifier, ``(N, D), (K_out, D) -> (N, K_out)``."""
    xh = _unit(_heads(x, num_heads))  # (N, K, d)
    wh = _normed_weight(weight, num_heads, gamma)  # (K_out, K, d)
    return (tau / num_heads) * torch.einsum("nkd,ckd->nc", xh, wh)


def tde_logits(
    x: Tensor,
    weight: Tensor,
    mean_feature: Tensor,
    *,
    alpha: float = ALPHA,
    num_heads: int = NUM_HEADS,
    tau: float = TAU,
    gamma: float = GAMMA,
) -> Tensor:
    """Counterfactual (TDE) logits ``z - alpha (tau / K) sum_k cos(x_k, d_k) d_k . w_ck / (||w_ck|| + gamma)``."""
    xh = _unit(_heads(x, num_heads))  # (N, K, d)
    dh = _unit(_heads(mean_feature.to(x.dtype), num_heads))  # (K, d)
    wh = _normed_weight(weight, num_heads, gamma)  # (K_out, K, d)
    cos = (xh * dh).sum(-1)  # (N, K)
    direct = torch.einsum("kd,ckd->ck", dh, wh)  # (K_out, K): what d alone says about each class
    plain = torch.einsum("nkd,ckd->nc", xh, wh)
    return (tau / num_heads) * (plain - alpha * cos @ direct.t())


def background_exempted_probs(logits: Tensor, tde: Tensor) -> Tensor:
    """``(N, C + 1)`` probabilities: background ``p_0 = softmax(logits)[:, C]``, foreground
    ``(1 - p_0) softmax(tde[:, :C])``. Rows sum to 1."""
    background = torch.softmax(logits, dim=1)[:, -1:]
    foreground = torch.softmax(tde[:, :-1], dim=1) * (1 - background)
    return torch.cat([foreground, background], dim=1)


class CausalNormClassifier(nn.Module):
    """TDE's classifier layer: normalised multi-head logits in training (and the moving-average feature), TDE at
    test.

    Args:
        in_features: D (divisible by ``num_heads``).
        out_features: ``K_out`` (``C + 1`` for a softmax detector head, background last).
        num_heads, tau, gamma: the classifier (2, 16, 1/32).
        alpha: counterfactual strength at test (3; 0 disables the subtraction).
        momentum: of the moving-average feature (0.9).
        background_exempted: at test, return ``log`` of :func:`background_exempted_probs` (its softmax is those
            probabilities, so a head that applies a softmax scores with them); ``False`` returns the TDE logits
            of every column.
        use_effect: subtract the counterfactual at test; ``False`` scores with the plain normalised logits (the
            "de-confounded training only" ablation).

    Buffers: ``mean_feature (D,)``, updated in training mode only (batch means summed over processes under DDP);
    with ``defer_update`` the features wait for :meth:`update_pending`, which a detector head calls with its
    foreground mask (the authors' detection code averages foreground RoIs only).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        num_heads: int = NUM_HEADS,
        tau: float = TAU,
        gamma: float = GAMMA,
        alpha: float = ALPHA,
        momentum: float = MOMENTUM,
        background_exempted: bool = True,
        use_effect: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or in_features % num_heads:
            raise ValueError(
                f"CausalNormClassifier: {in_features} features do not split into {num_heads} heads"
            )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"CausalNormClassifier: momentum must be in [0, 1); got {momentum}")
        if background_exempted and out_features < 2:
            raise ValueError("CausalNormClassifier: background_exempted needs C + 1 >= 2 outputs")
        self.in_features, self.out_features = in_features, out_features
        self.num_heads, self.tau, self.gamma = num_heads, float(tau), float(gamma)
        self.alpha, self.momentum = float(alpha), float(momentum)
        self.background_exempted, self.use_effect = background_exempted, use_effect
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        bound = in_features**-0.5  # the authors' uniform(-1/sqrt(D), 1/sqrt(D))
        nn.init.uniform_(self.weight, -bound, bound)
        self.register_buffer("mean_feature", torch.zeros(in_features))
        # A detector head sets defer_update so that only foreground RoIs enter the average (update_pending).
        self.defer_update = False
        self._pending: Tensor | None = None

    def update(self, x: Tensor, weight: Tensor | None = None) -> None:
        """``m <- mu m + mean(x)`` over the batch (and all processes); done by ``forward`` in training mode unless
        ``defer_update``. ``weight (N,)`` (0 / 1) averages over some rows only, e.g. the foreground RoIs; a batch
        with no such row adds nothing (``m <- mu m``)."""
        with torch.no_grad():
            x2 = x.detach().reshape(-1, self.in_features).float()
            w = x2.new_ones(x2.size(0)) if weight is None else weight.detach().reshape(-1).float()
            stats = all_reduce_sum_(torch.cat([(x2 * w.reshape(-1, 1)).sum(0), w.sum().reshape(1)]))
            mean = stats[:-1] / stats[-1].clamp_min(1)
            self.mean_feature.mul_(self.momentum).add_(mean)

    def update_pending(self, weight: Tensor | None = None) -> None:
        """Fold the features of the last training ``forward`` (kept when ``defer_update``) into the average, with
        :meth:`update`'s ``weight``; a detector head calls it once it knows which RoIs are foreground."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError(
                "CausalNormClassifier.update_pending: no training forward since the last update"
            )
        self.update(pending, weight)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.in_features)
        logits = causal_norm_logits(x, self.weight, num_heads=self.num_heads, tau=self.tau, gamma=self.gamma)
        if self.training:
            if self.defer_update:
                self._pending = x.detach()
            else:
                self.update(x)
            return logits
        if not self.use_effect:
            return logits
        tde = tde_logits(
            x,
            self.weight,
            self.mean_feature,
            alpha=self.alpha,
            num_heads=self.num_heads,
            tau=self.tau,
            gamma=self.gamma,
        )
        if not self.background_exempted:
            return tde
        return background_exempted_probs(logits, tde).clamp_min(torch.finfo(logits.dtype).tiny).log()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, num_heads={self.num_heads}, "
            f"tau={self.tau}, gamma={self.gamma}, alpha={self.alpha}, momentum={self.momentum}, "
            f"background_exempted={self.background_exempted}, use_effect={self.use_effect}"
        )
