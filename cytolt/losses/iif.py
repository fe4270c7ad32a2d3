"""Inverse Image Frequency, IIF (Alexandridis et al., "Inverse Image Frequency for Long-tailed Image Recognition",
IEEE TIP 32:5721-5736, 2023, arXiv 2209.04861).

A multiplicative margin on the classifier's logits, ``z'_c = iif_c z_c``, used at training and at test time,
where ``iif_c`` is an inverse document frequency of class ``c`` over the training images: a rare class gets a
large factor, so its logit (and the margin it must win by) is stretched more than a frequent class's. The loss is
the usual one (softmax cross-entropy in the paper) on the scaled logits.

Variants (``N`` training images, ``n_c`` of them containing ``c``, ``f_c = n_c / N``), as in the authors' weight
tables (their columns ``raw``, ``smooth``, ``prob``, ``base2``, ``base10``, ``normit``, ``gombit``):

=========  =====================================  =============================================
name       iif_c                                  at n_c = N (a class in every image)
=========  =====================================  =============================================
raw        log(N / n_c)                           0: the class's logit is always 0
smooth     log((N + 1) / (n_c + 1)) + 1           1: the only variant that stays >= 1
prob       log((N - n_c) / n_c)                   -inf (negative once f_c > 1/2)
base2      log2(N / n_c)                          0
base10     log10(N / n_c)                         0
normit     -Phi^-1(f_c) (probit)                  -inf (negative once f_c > 1/2)
gombit     -log(-log(1 - f_c)) (cloglog)          -inf (negative once f_c > 0.63)
=========  =====================================  =============================================

Given instance counts instead (``N`` training instances, ``n_c`` instances of ``c``) the same formulas are the
inverse object frequency, IOF, of the authors' ``_obj`` columns. A factor that is not finite and positive would
zero or flip a class's logits, so :func:`iif_weights` refuses it and names the classes (use ``smooth``).

Shapes: ``counts (C,)``; logits ``(N, K, ...)`` with the class axis at dim 1, ``K = R (C + extra)``: ``R`` anchors
per location (1 in a RoI head), each a group of the ``C`` classes and ``extra`` columns (background) of factor 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def _raw(n: Tensor, total: float) -> Tensor:
    return torch.log(total / n)


def _smooth(n: Tensor, total: float) -> Tensor:
    return torch.log((total + 1) / (n + 1)) + 1


def _prob(n: Tensor, total: float) -> Tensor:
    return torch.log((total - n) / n)


def _base2(n: Tensor, total: float) -> Tensor:
    return torch.log2(total / n)


def _base10(n: Tensor, total: float) -> Tensor:
    return torch.log10(total / n)


def _normit(n: Tensor, total: float) -> Tensor:
    return -torch.special.ndtri(n / total)


def _gombit(n: Tensor, total: float) -> Tensor:
    return -torch.log(-torch.log1p(-n / total))


# variant name -> iif_c from (n_c (C,) float64, N); the names are the authors' column names.
IIF_VARIANTS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "raw": _raw,
    "smooth": _smooth,
    "prob": _prob,
    "base2": _base2,
    "base10": _base10,
    "normit": _normit,
    "gombit": _gombit,
}


def iif_weights(counts: Sequence[int] | Tensor, total: int, *, variant: str = "raw") -> Tensor:
    """Per-class factors ``iif (C,)`` float32 from ``counts (C,)`` (images, or instances for IOF) out of ``total``.

    Raises a ValueError for an unknown variant, counts outside ``[0, total]``, or a factor that is not finite and
    positive (a class absent from training, or one in (nearly) every image for the variants that reach 0 or go
    negative there), naming the classes concerned.
    """
    if variant not in IIF_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, IIF_VARIANTS))}; got {variant!r}")
    n = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if n.numel() == 0:
        raise ValueError("iif_weights: counts is empty; give one count per class")
    if not total > 0 or bool(((n < 0) | (n > total)).any()):
        raise ValueError(f"iif_weights: counts must lie in [0, total] with total > 0; got total={total}")
    iif = IIF_VARIANTS[variant](n, float(total))
    bad = (~torch.isfinite(iif) | (iif <= 0)).nonzero().flatten().tolist()
    if bad:
        shown = ", ".join(f"{k} (count {int(n[k])})" for k in bad[:10])
        raise ValueError(
            f"iif_weights: variant {variant!r} gives a zero, negative or infinite factor for classes {shown} "
            f"of {total}; a class seen in no training image, or in (nearly) every one, needs variant='smooth'"
        )
    return iif.float()


def class_axis_scale(iif: Tensor, channels: int, ndim: int, *, extra: int = 0) -> Tensor:
    """``iif (C,)`` laid out along dim 1 of an ``ndim``-dimensional output with ``channels`` columns there.

    The columns are ``R`` groups of ``C + extra`` (``R`` anchors per location, mmdet's dense-head layout; ``R = 1``
    for a RoI head): the ``C`` classes, then ``extra`` columns (background; Seesaw's objectness) with factor 1.
    """
    group = torch.cat([iif, iif.new_ones(extra)]) if extra else iif
    if channels % group.numel():
        raise ValueError(
            f"IIF: a classifier with {channels} outputs is not made of groups of {iif.numel()} classes + {extra} "
            "extra columns"
        )
    return group.repeat(channels // group.numel()).reshape(1, channels, *([1] * (ndim - 2)))


class IIFClassifier(nn.Module):
    """A classifier layer whose outputs are multiplied by the IIF factors, in training and at test time.

    Args:
        classifier: the layer to wrap (``nn.Linear``, ``nn.Conv2d``, a cosine classifier, ...); its output has the
            classes on dim 1.
        iif: ``(C,)`` factors, e.g. from :func:`iif_weights`. Kept in the ``iif`` buffer (saved with the model, so
            an exported model scores as it trained).
        extra: columns after the ``C`` classes of each group that keep factor 1: 1 for a softmax head's background
            (the authors' choice), 2 for Seesaw's background and objectness, 0 for sigmoid heads.

    ``forward(x) = classifier(x) * iif`` along dim 1, once per anchor group when the layer has ``R (C + extra)``
    outputs. Parameters keep their names under ``classifier.``.
    """

    def __init__(self, classifier: nn.Module, iif: Sequence[float] | Tensor, *, extra: int = 0) -> None:
        super().__init__()
        factors = torch.as_tensor(iif, dtype=torch.float32).flatten()
        if factors.numel() == 0 or not bool((torch.isfinite(factors) & (factors > 0)).all()):
            raise ValueError("IIFClassifier: iif must be non-empty, finite and positive")
        if extra < 0:
            raise ValueError(f"IIFClassifier: extra must be >= 0; got {extra}")
        self.classifier = classifier
        self.extra = extra
        self.register_buffer("iif", factors)

    @property
    def num_classes(self) -> int:
        return self.iif.numel()

    def forward(self, x: Tensor) -> Tensor:
        return iif_logits(self.classifier(x), self.iif, extra=self.extra)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, extra={self.extra}"


def iif_logits(logits: Tensor, iif: Tensor, *, extra: int = 0) -> Tensor:
    """``logits * iif`` along dim 1 (the pure form of :class:`IIFClassifier`; same layouts and ``extra``)."""
    scale = class_axis_scale(
        iif.to(device=logits.device, dtype=logits.dtype), logits.size(1), logits.dim(), extra=extra
    )
    return logits * scale
