"""Class-difficulty based weighting, CDB-W (Sinha et al., "Class-Wise Difficulty-Balanced Loss for Solving
Class-Imbalance", ACCV 2020, arXiv 2010.01824; "Class-Difficulty Based Methods for Long-Tailed Visual
Recognition", IJCV 2022).

Difficulty ``d_c = 1 - A_c`` with ``A_c`` a per-class accuracy (for detection: per-class AP or recall at IoU 0.5)
measured on a held-out split; weights ``w_c = d_c^tau`` normalised to mean 1. Difficulty is re-measured every
K epochs (K = 1 in the paper) and the weights replaced, without averaging; before the first measurement all
weights are 1. The sampler side (CDB-S) lives in ``cytolt.samplers``; one hook in ``cytolt.mm`` feeds both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cytolt.losses._common import (
    check_logits,
    cross_entropy_rows,
    element_weight,
    expand_labels,
    reduce_loss,
    resolve_reduction,
    sample_weight,
    weight_reduce,
)
from cytolt.losses.focal import sigmoid_focal_loss

# Dynamic tau (Sinha et al. 2020, eq. 3-4 as restated in METHODS.md): b = max A / (min A + 0.01) - 1,
# tau = 2 sigmoid(b). One released code version drops the "- 1" and the factor 2; cytolt follows the paper.
MIN_ACCURACY_OFFSET = 0.01


def dynamic_tau(accuracy: Tensor) -> Tensor:
    """``tau = 2 sigmoid(max A / (min A + 0.01) - 1)`` for per-class accuracies ``A (C,)``; a 0-d tensor."""
    b = accuracy.max() / (accuracy.min() + MIN_ACCURACY_OFFSET) - 1
    return 2 * torch.sigmoid(b)


def cdb_weights(difficulty: Sequence[float] | Tensor, tau: float | str = "dynamic") -> Tensor:
    """Class weights ``w (C,) = d^tau``, normalised to mean 1 (``w <- w / sum(w) * C``).

    Args:
        difficulty: ``(C,)`` per-class difficulty ``1 - A_c`` in ``[0, 1]``.
        tau: a number (the paper runs 1 and 1.5) or ``"dynamic"`` (see :func:`dynamic_tau`).

    Returns uniform weights when every class has difficulty 0 (nothing left to re-weight). Called between
    epochs, not in a training step: it checks its input on the host.
    """
    d = torch.as_tensor(difficulty, dtype=torch.float32)
    if d.dim() != 1 or d.numel() == 0:
        raise ValueError(f"difficulty must be a non-empty 1-D sequence; got shape {tuple(d.shape)}")
    if not bool(((d >= 0) & (d <= 1)).all()):
        raise ValueError(f"difficulty must lie in [0, 1] (it is 1 - accuracy); got {d.tolist()}")
    if isinstance(tau, str):
        if tau != "dynamic":
            raise ValueError(f"tau must be a number or 'dynamic'; got {tau!r}")
        exponent = dynamic_tau(1 - d)
    else:
        exponent = torch.as_tensor(float(tau), dtype=d.dtype)
    w = d**exponent
    total = w.sum()
    return torch.where(
        total > 0, w / total.clamp(min=torch.finfo(w.dtype).tiny) * d.numel(), torch.ones_like(w)
    )


def cdb_cross_entropy(
    logits: Tensor, labels: Tensor, class_weights: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """Softmax CDB-W: ``w[y_i] CE(z_i, y_i)``.

    Args:
        logits: ``(N, K)``; ``K = C`` or ``C + 1`` (background last, weight 1).
        labels: ``(N,)`` int64 in ``0..K-1``.
        class_weights: ``(C,)``.
        reduction: ``"none"`` (``(N,)``), ``"mean"`` (plain mean of the weighted terms, not torch's
            weight-normalised mean) or ``"sum"``.
    """
    w = class_weights.to(logits.dtype)
    if logits.size(1) == w.numel() + 1:
        w = torch.cat([w, w.new_ones(1)])
    loss = w[labels] * cross_entropy_rows(logits, labels)
    return reduce_loss(loss, reduction)


def cdb_sigmoid_loss(
    logits: Tensor,
    targets: Tensor,
    class_weights: Tensor,
    *,
    alpha: float | None = None,
    gamma: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Sigmoid CDB-W: column ``c`` of the element-wise loss times ``w_c``.

    The element-wise loss is BCE, or sigmoid focal loss when ``gamma > 0`` / ``alpha`` is set (what a
    one-stage head such as RetinaNet needs to cope with its easy negatives). ``targets (N, C)`` one-hot,
    background rows all zero; ``reduction`` ``"none"`` gives ``(N, C)``.
    """
    loss = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    return reduce_loss(loss * class_weights.to(logits.dtype), reduction)


class CDBLoss(nn.Module):
    """CDB-W loss with its class weights in a buffer; mmdet one-stage call convention.

    ``use_sigmoid=False``: softmax cross-entropy, logits ``(N, C + 1)`` (background last, weight 1) or
    ``(N, C)`` when no label is background. ``use_sigmoid=True``: per-column weighted BCE / focal loss on
    ``(N, C)`` logits. Buffer ``class_weights (C,)`` starts at ones; ``set_difficulty()`` (or
    ``set_weights()``) replaces it between epochs. ``forward`` never changes it. ``reset()`` returns to ones.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        use_sigmoid: bool = False,
        tau: float | str = "dynamic",
        alpha: float | None = None,
        gamma: float = 0.0,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(tau, str) and tau != "dynamic":
            raise ValueError(f"CDBLoss: tau must be a number or 'dynamic'; got {tau!r}")
        if not use_sigmoid and (alpha is not None or gamma != 0):
            raise ValueError("CDBLoss: alpha and gamma (focal terms) apply only with use_sigmoid=True")
        self.num_classes = num_classes
        self.use_sigmoid = use_sigmoid
        self.tau = tau
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = resolve_reduction(reduction, None)
        self.loss_weight = loss_weight
        self.register_buffer("class_weights", torch.ones(num_classes))

    def set_difficulty(self, difficulty: Sequence[float] | Tensor) -> Tensor:
        """Replace the weights by ``cdb_weights(difficulty, self.tau)``; returns the new ``(C,)`` weights."""
        return self.set_weights(cdb_weights(difficulty, self.tau))

    def set_weights(self, weights: Sequence[float] | Tensor) -> Tensor:
        """Replace the class weights ``(C,)`` (copied into the buffer, on its device)."""
        w = torch.as_tensor(weights, dtype=self.class_weights.dtype)
        if w.shape != self.class_weights.shape:
            raise ValueError(f"CDBLoss: weights must have shape ({self.num_classes},); got {tuple(w.shape)}")
        self.class_weights.copy_(w)
        return self.class_weights

    def reset(self) -> None:
        """Uniform weights again."""
        self.class_weights.fill_(1.0)

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        reduction = resolve_reduction(self.reduction, reduction_override)
        c = self.num_classes
        if self.use_sigmoid:
            check_logits(logits, type(self).__name__ + " (use_sigmoid=True)", c)
            targets = expand_labels(labels, c, logits.dtype)
            loss = cdb_sigmoid_loss(
                logits, targets, self.class_weights, alpha=self.alpha, gamma=self.gamma, reduction="none"
            )
            el_weight = element_weight(weight, loss.shape)
        else:
            check_logits(logits, type(self).__name__ + " (use_sigmoid=False)", (c + 1, c))
            loss = cdb_cross_entropy(logits, labels.reshape(-1), self.class_weights, reduction="none")
            el_weight = sample_weight(weight, loss.numel())
        return self.loss_weight * weight_reduce(loss, el_weight, reduction, avg_factor)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, use_sigmoid={self.use_sigmoid}, tau={self.tau!r}, "
            f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
        )
