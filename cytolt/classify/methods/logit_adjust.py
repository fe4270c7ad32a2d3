"""Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv 2007.07314), in its
two forms.

- ``logit_adjust``: train with the logit-adjusted loss ``CE(z + tau log pi, y)``
  (:class:`cytolt.losses.logit_adjusted.LogitAdjustedLoss`), score with the raw logits ``z``.
- ``logit_adjust_posthoc``: a training-free second stage on a plain cross-entropy model: score with
  ``z - tau log pi`` (:func:`cytolt.calibration.logit_adjust`), which :class:`LogitAdjustedHead` applies inside the
  saved model so that screening scores as the report did.

``pi`` is the training class frequency ``n_c / N``, ``tau = 1`` (the paper's default; Fisher-consistent for the
balanced error). Adapted for cell crops: nothing; there is no background column to leave unadjusted.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cytolt.calibration import logit_adjust
from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.losses.logit_adjusted import TAU, LogitAdjustedLoss

__all__ = ["LOGIT_ADJUST", "LOGIT_ADJUST_POSTHOC", "LogitAdjustedHead", "build_logit_adjust_head"]


class LogitAdjustedHead(nn.Module):
    """A linear classifier scored post hoc: ``linear(x) - tau log pi``; the priors ``pi (K,)`` are a buffer."""

    def __init__(self, linear: nn.Linear, priors: Tensor, *, tau: float = TAU) -> None:
        super().__init__()
        priors = torch.as_tensor(priors, dtype=torch.float32).flatten()
        if priors.numel() != linear.out_features:
            raise ValueError(
                f"LogitAdjustedHead: {priors.numel()} priors for a classifier with {linear.out_features} outputs"
            )
        self.linear = linear
        self.tau = float(tau)
        self.register_buffer("priors", priors)

    def forward(self, x: Tensor) -> Tensor:
        return logit_adjust(self.linear(x), self.priors, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def _loss(ctx: MethodContext) -> nn.Module:
    return LogitAdjustedLoss(ctx.priors, tau=float(LOGIT_ADJUST.option(ctx, "tau")))


def _finish_posthoc(ctx: MethodContext) -> Head:
    linear = copy.deepcopy(stage_one_linear(ctx, "logit_adjust_posthoc"))
    tau = float(LOGIT_ADJUST_POSTHOC.option(ctx, "tau"))
    if (ctx.counts <= 0).any():
        raise ValueError("logit_adjust_posthoc: every class needs a training crop (log pi of an empty class)")
    return Head(LogitAdjustedHead(linear, ctx.priors, tau=tau), {"type": "logit_adjust", "tau": tau})


def build_logit_adjust_head(feature_dim: int, num_classes: int, *, tau: float) -> nn.Module:
    """The folder's builder for ``{"type": "logit_adjust", "tau": t}`` (weights and priors from the file)."""
    return LogitAdjustedHead(nn.Linear(feature_dim, num_classes), torch.ones(num_classes), tau=float(tau))


LOGIT_ADJUST = MethodSpec(
    name="logit_adjust",
    paper="Menon et al., Long-tail learning via logit adjustment, ICLR 2021 (loss)",
    build_loss=_loss,
    options={"tau": TAU},
)
LOGIT_ADJUST_POSTHOC = MethodSpec(
    name="logit_adjust_posthoc",
    paper="Menon et al., Long-tail learning via logit adjustment, ICLR 2021 (post-hoc)",
    stage=2,
    trains="none",
    finish=_finish_posthoc,
    options={"tau": TAU},
)
