"""Long-tail classification losses for detectors, pure PyTorch (no mmdet import).

Each method is a plain function first (``logits (N, C)`` with one-hot ``targets (N, C)`` for the sigmoid family,
int ``labels (N,)`` for the softmax family, ``reduction`` ``"none" | "mean" | "sum"``) and an ``nn.Module`` that
follows mmdet's one-stage head call ``forward(logits, labels (N,) with C = background, weight=None,
avg_factor=None, reduction_override=None)`` and keeps its state in registered buffers. ``cytolt.mm`` registers
the modules in mmdet's ``MODELS`` under the names in :data:`LOSSES`.
"""

from __future__ import annotations

from torch import nn

from cytolt.losses.balanced_bce import BalancedBCELoss, balanced_bce_loss
from cytolt.losses.cdb import CDBLoss, cdb_cross_entropy, cdb_sigmoid_loss, cdb_weights, dynamic_tau
from cytolt.losses.distribution_balanced import DistributionBalancedLoss, distribution_balanced_loss
from cytolt.losses.efl import EqualizedFocalLoss, equalized_focal_loss
from cytolt.losses.eql import EQLLoss, equalization_loss
from cytolt.losses.eqlv2 import EQLv2Loss, eqlv2_loss, eqlv2_weights
from cytolt.losses.federated import FederatedLoss, federated_class_mask, federated_loss
from cytolt.losses.focal import FocalLoss, sigmoid_focal_loss
from cytolt.losses.grad_libra import GradLibraLoss, grad_libra_loss
from cytolt.losses.logit_adjusted import LogitAdjustedLoss, logit_adjusted_cross_entropy
from cytolt.losses.seesaw import SeesawLoss, seesaw_loss, seesaw_scores

# name -> class; the names are the ones configs use (``type='GradLibraLoss'``).
LOSSES: dict[str, type[nn.Module]] = {
    "FocalLoss": FocalLoss,
    "EqualizedFocalLoss": EqualizedFocalLoss,
    "EQLLoss": EQLLoss,
    "EQLv2Loss": EQLv2Loss,
    "GradLibraLoss": GradLibraLoss,
    "SeesawLoss": SeesawLoss,
    "CDBLoss": CDBLoss,
    "FederatedLoss": FederatedLoss,
    "BalancedBCELoss": BalancedBCELoss,
    "LogitAdjustedLoss": LogitAdjustedLoss,
    "DistributionBalancedLoss": DistributionBalancedLoss,
}


def get_loss(name: str) -> type[nn.Module]:
    """The loss class called ``name``; a ValueError lists the choices."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got {name!r}") from None


__all__ = [
    "LOSSES",
    "BalancedBCELoss",
    "CDBLoss",
    "DistributionBalancedLoss",
    "EQLLoss",
    "EQLv2Loss",
    "EqualizedFocalLoss",
    "FederatedLoss",
    "FocalLoss",
    "GradLibraLoss",
    "LogitAdjustedLoss",
    "SeesawLoss",
    "balanced_bce_loss",
    "cdb_cross_entropy",
    "cdb_sigmoid_loss",
    "cdb_weights",
    "distribution_balanced_loss",
    "dynamic_tau",
    "equalization_loss",
    "equalized_focal_loss",
    "eqlv2_loss",
    "eqlv2_weights",
    "federated_class_mask",
    "federated_loss",
    "get_loss",
    "grad_libra_loss",
    "logit_adjusted_cross_entropy",
    "seesaw_loss",
    "seesaw_scores",
    "sigmoid_focal_loss",
]
