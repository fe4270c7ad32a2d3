"""mmdet glue for IIF (``cytolt.losses.iif``): classifiers whose logits are multiplied by inverse image frequencies.

The factors are in the classifier itself, so training (any loss, softmax cross-entropy in the paper) and
mmdet's test-time scoring both see the scaled logits. Registered in mmdet's ``MODELS`` on import:

- ``IIFRetinaHead``: ``RetinaHead`` whose ``retina_cls`` is wrapped in ``IIFClassifier`` (softmax heads, ``C + 1``
  outputs per anchor: the background column keeps factor 1; sigmoid heads: ``C``).
- ``IIFPredictor``: a ``cls_predictor_cfg`` for two-stage ``BBoxHead``s (``Shared2FCBBoxHead`` and the cascade's
  heads): builds the usual predictor (``Linear`` by default, ``NormedLinear`` for a cosine classifier) and wraps it.

Both take the factors directly (``iif``) or count them from the training annotations (``train_ann_file``, with
``cytolt.mm.lvis.lvis_category_stats``): ``counts='images'`` is IIF (images per class out of all images),
``counts='instances'`` the authors' inverse object frequency (instances per class out of all instances).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS
from torch import Tensor

from cytolt.losses.iif import IIFClassifier, iif_weights
from cytolt.mm.lvis import lvis_category_stats

__all__ = ["IIF_COUNTS", "IIFPredictor", "IIFRetinaHead", "iif_from_annotations"]

# counts= -> (per-class counts, their total) from a training annotation file's CategoryStats.
IIF_COUNTS = {
    "images": lambda stats: (stats.images_per_class, stats.num_images),  # IIF
    "instances": lambda stats: (stats.instances_per_class, int(stats.instances_per_class.sum())),  # IOF
}


def iif_from_annotations(train_ann_file: str, *, variant: str = "raw", counts: str = "images") -> Tensor:
    """``(C,)`` IIF factors counted from a COCO / LVIS training json, in its category (label) order."""
    if counts not in IIF_COUNTS:
        raise ValueError(f"counts must be one of {', '.join(map(repr, IIF_COUNTS))}; got {counts!r}")
    per_class, total = IIF_COUNTS[counts](lvis_category_stats(train_ann_file))
    return iif_weights(per_class, total, variant=variant)


def _resolve_iif(
    owner: str,
    num_classes: int | None,
    iif: Sequence[float] | None,
    train_ann_file: str | None,
    variant: str,
    counts: str,
) -> Tensor:
    if (iif is None) == (train_ann_file is None):
        raise ValueError(f"{owner}: give exactly one of iif and train_ann_file")
    factors = (
        torch.as_tensor(np.asarray(iif, dtype=np.float64), dtype=torch.float32).flatten()
        if iif is not None
        else iif_from_annotations(train_ann_file, variant=variant, counts=counts)
    )
    if num_classes is not None and factors.numel() != num_classes:
        raise ValueError(f"{owner}: {factors.numel()} IIF factors for a head with {num_classes} classes")
    return factors


@MODELS.register_module()
class IIFRetinaHead(RetinaHead):
    """mmdet's ``RetinaHead`` with IIF logit scaling (Alexandridis et al., IEEE TIP 2023), at training and test.

    Args:
        iif: ``(C,)`` factors given directly, or
        train_ann_file: the training json they are counted from (``iif_variant``, ``iif_counts``).
        iif_variant: a name of ``cytolt.losses.iif.IIF_VARIANTS`` (default ``'raw'``, the paper's).
        iif_counts: ``'images'`` (IIF) or ``'instances'`` (IOF).
        **kwargs: ``RetinaHead``'s arguments.
    """

    def __init__(
        self,
        *,
        iif: Sequence[float] | None = None,
        train_ann_file: str | None = None,
        iif_variant: str = "raw",
        iif_counts: str = "images",
        **kwargs: Any,
    ) -> None:
        factors = _resolve_iif(
            type(self).__name__, kwargs.get("num_classes"), iif, train_ann_file, iif_variant, iif_counts
        )
        super().__init__(**kwargs)
        # Softmax: C + 1 outputs per anchor, background last (factor 1); sigmoid: C.
        self.retina_cls = IIFClassifier(self.retina_cls, factors, extra=0 if self.use_sigmoid_cls else 1)


@MODELS.register_module()
class IIFPredictor(IIFClassifier):
    """The class predictor of a two-stage ``BBoxHead`` with IIF scaling: ``cls_predictor_cfg=dict(type='IIFPredictor',
    train_ann_file=...)``.

    ``BBoxHead`` passes ``in_features`` and ``out_features``: ``C + 1`` for a softmax loss (background factor 1, the
    authors' layout), ``C`` for ``RoISigmoidLoss``-style heads, ``C + 2`` for Seesaw.

    Args:
        in_features, out_features: from the head.
        predictor: config of the wrapped layer, default ``dict(type='Linear')``; e.g.
            ``dict(type='NormedLinear', tempearture=20)`` for a cosine classifier (mmdet's spelling).
        iif, train_ann_file, variant, counts: as ``IIFRetinaHead``'s ``iif``, ``train_ann_file``, ``iif_variant``,
            ``iif_counts``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        predictor: Mapping[str, Any] | None = None,
        iif: Sequence[float] | None = None,
        train_ann_file: str | None = None,
        variant: str = "raw",
        counts: str = "images",
    ) -> None:
        factors = _resolve_iif(type(self).__name__, None, iif, train_ann_file, variant, counts)
        extra = out_features - factors.numel()
        if extra not in (0, 1, 2):
            raise ValueError(
                f"IIFPredictor: {factors.numel()} IIF factors for {out_features} outputs (expected C, C + 1 or C + 2)"
            )
        layer = MODELS.build(
            dict(predictor or dict(type="Linear"), in_features=in_features, out_features=out_features)
        )
        super().__init__(layer, factors, extra=extra)
