"""Inverse image frequency, IIF (Alexandridis et al., "Inverse Image Frequency for Long-tailed Image
Recognition", IEEE TIP 32:5721-5736, 2023, arXiv 2209.04861).

The classifier's logits are multiplied by per-class factors, ``z'_c = iif_c z_c``
(:class:`cytolt.losses.iif.IIFClassifier`), in training and at test time, with softmax cross-entropy on the scaled
logits. Adapted for cell crops: every crop is an "image" holding exactly one class, so the image counts are the
crop counts (IIF and the authors' instance form, IOF, coincide); the variant is ``smooth``,
``log((N + 1) / (n_c + 1)) + 1``, so that a class holding most crops keeps a factor >= 1 (``raw`` reaches 0 when a
class is in every image); no background column.
"""

from __future__ import annotations

from torch import nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec
from cytolt.losses.iif import IIFClassifier, iif_weights

__all__ = ["IIF", "build_iif_head"]


def _head(ctx: MethodContext) -> Head:
    variant = IIF.option(ctx, "iif_variant")
    factors = iif_weights(ctx.counts, int(ctx.counts.sum()), variant=variant)
    head = ctx.model.head
    if not isinstance(head, nn.Linear):
        raise ValueError(f"iif wraps a linear classifier; the model's head is {type(head).__name__}")
    return Head(IIFClassifier(head, factors.to(head.weight.device)), {"type": "iif", "variant": variant})


def build_iif_head(feature_dim: int, num_classes: int, *, variant: str) -> nn.Module:
    """The folder's builder for ``{"type": "iif", "variant": ...}`` (weights and factors from the file)."""
    return IIFClassifier(nn.Linear(feature_dim, num_classes), [1.0] * num_classes)


IIF = MethodSpec(
    name="iif",
    paper="Alexandridis et al., Inverse Image Frequency for Long-tailed Image Recognition, IEEE TIP 2023",
    build_head=_head,
    options={"iif_variant": "smooth"},
)
