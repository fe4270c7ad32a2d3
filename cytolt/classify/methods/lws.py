"""Learnable weight scaling, LWS (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020, arXiv 1910.09217).

Second stage: the stage-1 linear classifier is kept and frozen, and one scale per class is learned on top of it,
``z'_c = s_c z_c`` (:class:`cytolt.losses.lws.LWSClassifier`, scales start at 1), on class-balanced data with the
backbone frozen. Adapted for cell crops: the scale multiplies the whole logit, bias included (the detector form
in ``cytolt.losses.lws``; Kang et al. drop the bias, which a scale of the bias-free logit would equal); no weight
decay on the scales (it would pull them towards 0, not towards 1).
"""

from __future__ import annotations

import copy

from torch import nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.losses.lws import LWSClassifier

__all__ = ["LWS", "build_lws_head"]


def _head(ctx: MethodContext) -> Head:
    linear = copy.deepcopy(stage_one_linear(ctx, "lws"))
    return Head(LWSClassifier(linear, linear.out_features), {"type": "lws"})


def build_lws_head(feature_dim: int, num_classes: int) -> nn.Module:
    """The folder's builder for ``{"type": "lws"}`` (weights and scales from the file)."""
    return LWSClassifier(nn.Linear(feature_dim, num_classes), num_classes)


LWS = MethodSpec(
    name="lws",
    paper="Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020 (LWS)",
    stage=2,
    sampler="class_balanced",
    trains="head",
    weight_decay=0.0,
    build_head=_head,
)
