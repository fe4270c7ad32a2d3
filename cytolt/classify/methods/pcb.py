"""Pairwise class balance, PCB, for the cell classifier (He, Zhang, Wei, Zhang and Sun, "Relieving Long-tailed
Instance Segmentation via Pairwise Class Balance", CVPR 2022, arXiv 2201.02784).

The detector form (:mod:`cytolt.losses.pcb`) keeps a running confusion matrix of the training softmax (momentum
0.99), turns its column ``y`` into a "fight-back" soft label ``q(y)`` for a sample of class ``y``, and adds
``alpha KL(q(y) || softmax(z))`` (alpha 0.4) to ``(1 - alpha) CE`` from a late epoch on. Adapted for cell crops: no
background column, so every sample is foreground and the softmax runs over the ``K`` classes only
(:func:`pcb_classification_loss`; the confusion statistics, soft labels and the switch are the detector module's);
the regulariser starts at epoch ``floor(E * 16 / 24)`` (0-based) of ``E``, the authors' epoch 17 of 24, and only
once every class has been seen (the authors' rule).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cytolt.classify.methods.spec import MethodContext, MethodSpec
from cytolt.losses._common import check_logits, cross_entropy_rows, row_logsumexp
from cytolt.losses.pcb import ALPHA, MOMENTUM, PCBLoss, fightback_labels

__all__ = ["PCB", "PCBClassificationLoss", "pcb_classification_loss", "start_epoch"]


def pcb_classification_loss(
    logits: Tensor, labels: Tensor, confusion: Tensor, *, alpha: float | Tensor = ALPHA
) -> Tensor:
    """Mean of ``(1 - alpha) CE(z, y) + alpha KL(q(y) || softmax(z))`` over ``(N, K)`` logits, no background.

    ``confusion (K, K)`` (rows: true class) gives the soft labels ``q`` (:func:`cytolt.losses.pcb.fightback_labels`);
    it is detached. ``alpha`` in ``[0, 1]``; 0 is cross-entropy.
    """
    num_classes = confusion.size(0)
    check_logits(logits, "pcb_classification_loss", num_classes)
    target = fightback_labels(confusion.detach().to(logits.dtype), labels)
    log_p = logits - row_logsumexp(logits).reshape(-1, 1)
    kl = (torch.xlogy(target, target) - target * log_p).sum(1)  # 0 log 0 = 0
    return ((1 - alpha) * cross_entropy_rows(logits, labels) + alpha * kl).mean()


class PCBClassificationLoss(PCBLoss):
    """:class:`cytolt.losses.pcb.PCBLoss` (same buffers, update rule and switch) on ``(N, K)`` logits without
    background: ``loss(logits, labels) -> scalar``."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        check_logits(logits, type(self).__name__, self.num_classes)
        if self.training:
            self.update(logits, labels)
        return pcb_classification_loss(logits, labels, self.confusion, alpha=self.effective_alpha())


def start_epoch(epochs: int) -> int:
    """0-based epoch from which the regulariser is on: the authors' 17th of 24, scaled to ``epochs``."""
    return math.floor(epochs * 16 / 24)


def _loss(ctx: MethodContext) -> nn.Module:
    loss = PCBClassificationLoss(
        ctx.num_classes, alpha=float(PCB.option(ctx, "pcb_alpha")), momentum=MOMENTUM
    )
    loss.set_enabled(_start(ctx) <= 0)
    return loss.to(ctx.device)


def _start(ctx: MethodContext) -> int:
    start = PCB.option(ctx, "pcb_start")
    return start_epoch(ctx.epochs) if start is None else int(start)


def _epoch_end(ctx: MethodContext, epoch: int) -> dict:
    on = epoch + 1 >= _start(ctx)  # the next epoch's setting
    ctx.loss.set_enabled(on)
    return {"pcb_enabled_next": on}


PCB = MethodSpec(
    name="pcb",
    paper="He et al., Relieving Long-tailed Instance Segmentation via Pairwise Class Balance, CVPR 2022",
    build_loss=_loss,
    epoch_end=_epoch_end,
    options={"pcb_alpha": ALPHA, "pcb_start": None},
)
