"""Pairwise Class Balance, PCB (He, Zhang, Wei, Zhang and Sun, "Relieving Long-tailed Instance Segmentation via
Pairwise Class Balance", CVPR 2022, arXiv 2201.02784).

A softmax classifier's pairwise biases are read off a running confusion matrix of the foreground classes and fed
back as soft labels:

- **confusion matrix** ``M (C, C)``: row ``i`` is the mean foreground softmax ``softmax(z[:C])`` of the training
  samples labelled ``i``, kept as a moving average ``M_i <- m M_i + (1 - m) mean_batch`` (momentum ``m = 0.99``)
  for the classes present in the batch, then renormalised to sum 1 (so the first update of a row is its batch
  mean). Background samples do not enter it.
- **fight-back soft label** of a sample of class ``y``: column ``y`` of ``M`` normalised over its rows,
  ``q_k = M_ky / sum_i M_iy``: the classes ``k`` whose samples the classifier pulls towards ``y``. Training the
  ``y`` sample towards ``q`` stops it from suppressing exactly those classes (a head class that swallows a tail
  class's samples stops pushing that tail class's logit down), which is the "pairwise" balance.
- **loss**, per RoI ``i`` with ``p = softmax(z_i)`` over all ``C + 1`` columns:
  background ``CE(z_i, C)``; foreground ``(1 - alpha) CE(z_i, y_i) + alpha KL([q(y_i), 0] || p)``. The KL and the
  soft cross-entropy differ by the constant entropy of ``q``, so their gradients are the same (the authors'
  remark); the KL is reported because it is zero when the prediction is the soft label.
- the regulariser starts late (the authors: epoch 17 of a 24-epoch schedule, ``alpha = 0.4``) and only once every
  class has been seen; before that the loss is the plain softmax cross-entropy. A hook switches it on
  (:meth:`PCBLoss.set_enabled`, ``cytolt.mm.pcb.PCBHook``).

Not implemented: the paper's iterative RoI head (three classifier iterations with alpha ramped 0, alpha/2,
alpha); cytolt applies the full alpha in the one classifier of a head (the authors' last iteration).

Shapes: ``logits (N, C + 1)`` background last; ``labels (N,)`` int64 in ``0..C`` (``C`` = background).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cytolt.losses._common import (
    all_reduce_sum_,
    check_logits,
    cross_entropy_rows,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    row_logsumexp,
    sample_weight,
    weight_reduce,
)

MOMENTUM = 0.99  # the authors' configs, every variant
ALPHA = 0.4  # the authors' LVIS v1 softmax (CE) configs


def batch_confusion(logits: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(sums (C, C), counts (C,))`` of one batch: row ``i`` of ``sums`` adds the foreground softmax of the samples
    labelled ``i``; background samples add nothing. Detached; no host read."""
    with torch.no_grad():
        onehot = expand_labels(labels, num_classes, torch.float32)  # background rows all zero
        probs = torch.softmax(logits.detach()[:, :num_classes].float(), dim=1)
        return onehot.t() @ probs, onehot.sum(0)


def update_confusion(
    confusion: Tensor, sums: Tensor, counts: Tensor, *, momentum: float = MOMENTUM
) -> Tensor:
    """The moving-average confusion matrix after one batch, ``(C, C)``: rows of the classes with ``counts > 0`` move
    to ``m M_i + (1 - m) sums_i / counts_i`` and are renormalised to sum 1; the other rows stay."""
    present = (counts > 0).reshape(-1, 1)
    mean = sums / counts.clamp_min(1).reshape(-1, 1)
    moved = momentum * confusion + (1 - momentum) * mean
    moved = moved / moved.sum(1, keepdim=True).clamp_min(torch.finfo(moved.dtype).tiny)
    return torch.where(present, moved, confusion)


def fightback_labels(confusion: Tensor, labels: Tensor) -> Tensor:
    """Soft labels ``(N, C)``: for a sample of class ``y``, column ``y`` of ``confusion`` normalised over rows;
    background rows (label ``C``) are all zero, and so is a column with no mass."""
    num_classes = confusion.size(0)
    column = confusion / confusion.sum(0, keepdim=True).clamp_min(torch.finfo(confusion.dtype).tiny)
    rows = column.t()[labels.clamp(max=num_classes - 1)]  # (N, C); background rows masked below
    return rows * (labels < num_classes).to(rows.dtype).reshape(-1, 1)


def pcb_loss(
    logits: Tensor,
    labels: Tensor,
    confusion: Tensor,
    *,
    alpha: float | Tensor = ALPHA,
    reduction: str = "mean",
) -> Tensor:
    """PCB's loss per RoI: background ``CE``; foreground ``(1 - alpha) CE + alpha KL([q, 0] || softmax(z))``.

    Args:
        logits: ``(N, C + 1)``, background last.
        labels: ``(N,)`` int64 in ``0..C``.
        confusion: ``(C, C)`` confusion matrix (rows: true class, columns: predicted), e.g. the buffer of
            :class:`PCBLoss`; detached here.
        alpha: weight of the regulariser in ``[0, 1]`` (a 0-d tensor is fine; 0 is softmax cross-entropy).
        reduction: ``"none"`` (``(N,)``), ``"mean"`` or ``"sum"``.
    """
    num_classes = confusion.size(0)
    check_logits(logits, "pcb_loss", num_classes + 1)
    soft = fightback_labels(confusion.detach().to(logits.dtype), labels)
    target = torch.cat([soft, soft.new_zeros(soft.size(0), 1)], dim=1)
    log_p = logits - row_logsumexp(logits).reshape(-1, 1)
    kl = (torch.xlogy(target, target) - target * log_p).sum(1)  # 0 log 0 = 0
    foreground = (labels < num_classes).to(logits.dtype)
    rows = cross_entropy_rows(logits, labels) * (1 - alpha * foreground) + alpha * foreground * kl
    return reduce_loss(rows, reduction)


class PCBLoss(nn.Module):
    """PCB with mmdet's call convention: softmax cross-entropy plus the fight-back KL regulariser, once enabled.

    Buffers (saved in checkpoints): ``confusion (C, C)``, ``instance_count (C,)`` (foreground training samples seen
    per class) and ``enabled`` (0-d, 0 or 1: set by a hook at the start epoch or iteration). In training mode every
    call updates ``confusion`` and ``instance_count`` (batch statistics summed over processes under DDP). The
    regulariser's weight is ``alpha * enabled``, and 0 while some class has no sample yet when
    ``require_all_seen`` (the authors' rule). Nothing is read on the host.

    Args:
        num_classes: C (the head has ``C + 1`` outputs).
        alpha: weight of the regulariser (0.4, the authors' LVIS value).
        momentum: of the confusion matrix rows (0.99).
        require_all_seen: hold the regulariser off until every class has a training sample.
        reduction, loss_weight: as mmdet's ``CrossEntropyLoss``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        alpha: float = ALPHA,
        momentum: float = MOMENTUM,
        require_all_seen: bool = True,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"PCBLoss: num_classes must be >= 1; got {num_classes}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"PCBLoss: alpha must be in [0, 1]; got {alpha}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"PCBLoss: momentum must be in [0, 1); got {momentum}")
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.momentum = float(momentum)
        self.require_all_seen = require_all_seen
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("confusion", torch.zeros(num_classes, num_classes))
        self.register_buffer("instance_count", torch.zeros(num_classes))
        self.register_buffer("enabled", torch.zeros(()))

    def set_enabled(self, enabled: bool) -> None:
        """Switch the regulariser on or off (called by ``PCBHook``; a host-side value, no sync)."""
        self.enabled.fill_(1.0 if enabled else 0.0)

    def reset(self) -> None:
        """Forget the confusion matrix and the counts, and switch the regulariser off."""
        self.confusion.zero_()
        self.instance_count.zero_()
        self.enabled.zero_()

    def effective_alpha(self) -> Tensor:
        """The regulariser weight now, a 0-d tensor: ``alpha * enabled`` (times "every class seen")."""
        alpha = self.alpha * self.enabled
        if self.require_all_seen:
            alpha = alpha * (self.instance_count > 0).all().to(alpha.dtype)
        return alpha

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Fold one batch into ``confusion`` and ``instance_count`` (done by ``forward`` in training mode)."""
        sums, counts = batch_confusion(logits, labels, self.num_classes)
        stats = all_reduce_sum_(torch.cat([sums.flatten(), counts]))  # one all_reduce for both
        c = self.num_classes
        sums, counts = stats[: c * c].reshape(c, c), stats[c * c :]
        self.confusion.copy_(update_confusion(self.confusion, sums, counts, momentum=self.momentum))
        self.instance_count.add_(counts)

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        check_logits(logits, type(self).__name__, self.num_classes + 1)
        reduction = resolve_reduction(self.reduction, reduction_override)
        if self.training:
            self.update(logits, labels)
        rows = pcb_loss(logits, labels, self.confusion, alpha=self.effective_alpha(), reduction="none")
        return self.loss_weight * weight_reduce(
            rows, sample_weight(weight, rows.numel()), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, momentum={self.momentum}, "
            f"require_all_seen={self.require_all_seen}, reduction={self.reduction!r}, "
            f"loss_weight={self.loss_weight}"
        )
