"""Distribution-Balanced loss on the cell classifier (Wu et al., "Distribution-Balanced Loss for Multi-Label
Classification in Long-Tailed Datasets", ECCV 2020, arXiv 2007.09654; :mod:`cytolt.losses.distribution_balanced`).

K independent sigmoids on one-hot targets with the DB loss and class-aware re-sampling (the ``class_balanced``
sampler; the authors train DB with their ``ClassAware`` sampler), constants from the authors' COCO-MLT config.
A crop holds one class, so the re-balancing ratio of its own class is 1 and a negative class ``i`` of a crop of
class ``y`` gets ``r = n_y / n_i``: negatives of rarer classes keep weight ~``alpha + 1``, negatives of more
frequent classes are damped towards ``alpha``. The multi-label use the loss was written for is the tile triage
(:mod:`cytolt.classify.triage`). At inference the K sigmoid scores are normalised to sum 1 (grad_libra's
``sigmoid_norm`` head), as for the other sigmoid-trained rows.
"""

from __future__ import annotations

import copy

from torch import nn

from cytolt.classify.methods.grad_libra import SigmoidNormHead
from cytolt.classify.methods.spec import Head, MethodContext, MethodSpec, stage_one_linear
from cytolt.losses.distribution_balanced import DistributionBalancedLoss

__all__ = ["DB"]


def _loss(ctx: MethodContext) -> nn.Module:
    # Mean over the N x K elements, as the authors' head reduces it; every class needs a training crop.
    return DistributionBalancedLoss(ctx.counts.tolist(), float(ctx.counts.sum())).to(ctx.device)


def _finish(ctx: MethodContext) -> Head:
    return Head(SigmoidNormHead(copy.deepcopy(stage_one_linear(ctx, "db"))), {"type": "sigmoid_norm"})


DB = MethodSpec(
    name="db",
    paper="Wu et al., Distribution-Balanced Loss for Multi-Label Classification in Long-Tailed Datasets, ECCV 2020",
    sampler="class_balanced",
    build_loss=_loss,
    finish=_finish,
)
