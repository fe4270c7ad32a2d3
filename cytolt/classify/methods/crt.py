"""Classifier re-training, cRT (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020, arXiv 1910.09217).

Second stage of decoupled training: the representation learned with instance sampling is kept (backbone frozen,
batch-norm statistics included), the linear classifier is re-initialised and trained alone on class-balanced
data (each class equally likely, then a crop of it uniformly) for a few epochs. Adapted for cell crops: nothing
but the scale; the classifier is ``nn.Linear(D, K)`` with PyTorch's default initialisation, re-drawn (the loop seeds
it with the run's seed), and the augmentation is the loop's (flips, 90-degree turns, brightness), as Kang et al. keep theirs.
"""

from __future__ import annotations

from torch import nn

from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, linear_head, stage_one_linear

__all__ = ["CRT"]


def _head(ctx: MethodContext) -> Head:
    old = stage_one_linear(ctx, "crt")
    return linear_head(nn.Linear(old.in_features, old.out_features).to(old.weight.device))


CRT = MethodSpec(
    name="crt",
    paper="Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020 (cRT)",
    stage=2,
    sampler="class_balanced",
    trains="head",
    build_head=_head,
)
