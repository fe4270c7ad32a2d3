"""Register cytolt's long-tail losses in mmdet's ``MODELS`` registry.

Each class here is the ``cytolt.losses`` class plus what mmdet's heads expect of a ``loss_cls``:

- the ``use_sigmoid`` config key. Dense heads (``AnchorHead``, ``RetinaHead``, ...) read it from the config dict,
  before the loss is built, to size their classifier: ``C`` outputs when true, ``C + 1`` (background last) when
  false. Sigmoid losses therefore need ``use_sigmoid=True`` in the config; a sigmoid loss that receives ``C + 1``
  columns raises an error that says so. Softmax losses (Seesaw, logit adjustment, CDB's default) take
  ``use_sigmoid=False`` (the default) and handle the ``C + 1`` layout.
- for Seesaw in a two-stage ``BBoxHead``: mmdet's custom classifier hooks (``custom_cls_channels`` and friends,
  ``C + 2`` outputs: classes then objectness), so the loss is a drop-in for mmdet's own ``SeesawLoss``.

Names: the names of :data:`cytolt.losses.LOSSES`, except where mmdet already registers the name
(``FocalLoss``, ``SeesawLoss``); those are registered as ``CytoltFocalLoss`` and ``CytoltSeesawLoss`` so that
mmdet's stay untouched. A pure-Python config imports the class instead: ``from cytolt.mm.losses import
GradLibraLoss`` and ``type=GradLibraLoss``.
"""

from __future__ import annotations

from typing import Any

from mmdet.models.losses import accuracy
from mmdet.registry import MODELS
from torch import Tensor, nn

from cytolt import losses as _losses
from cytolt.losses.seesaw import seesaw_scores, split_seesaw_logits

# cytolt name -> name in mmdet's registry, where mmdet already has a class of that name.
RENAMED = {"FocalLoss": "CytoltFocalLoss", "SeesawLoss": "CytoltSeesawLoss"}


class _SigmoidLossConfig:
    """Accept and check mmdet's ``use_sigmoid`` key; explain a head built for softmax (``C + 1`` outputs)."""

    num_classes: int

    def __init__(self, *, use_sigmoid: bool = True, **kwargs: Any) -> None:
        if not use_sigmoid:
            raise ValueError(
                f"{type(self).__name__} is a sigmoid loss: set use_sigmoid=True in loss_cls (mmdet heads size "
                "their classifier from it)"
            )
        super().__init__(**kwargs)

    def forward(self, cls_score: Tensor, labels: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        num_classes = getattr(self, "num_classes", None)  # FocalLoss has none: it takes any C
        expects_extra = getattr(self, "objectness", False)  # EQLv2's objectness form takes C + 1 on purpose
        if (
            num_classes is not None
            and not expects_extra
            and cls_score.dim() == 2
            and cls_score.size(1) == num_classes + 1
        ):
            raise ValueError(
                f"{type(self).__name__} got {num_classes + 1} class outputs for {num_classes} classes: the head was "
                "built for softmax; add use_sigmoid=True to loss_cls"
            )
        return super().forward(cls_score, labels, *args, **kwargs)  # type: ignore[misc]


class FocalLoss(_SigmoidLossConfig, _losses.FocalLoss):
    """``cytolt.losses.FocalLoss`` for mmdet configs (registered as ``CytoltFocalLoss``)."""


class EqualizedFocalLoss(_SigmoidLossConfig, _losses.EqualizedFocalLoss):
    """``cytolt.losses.EqualizedFocalLoss`` for mmdet configs."""


class EQLLoss(_SigmoidLossConfig, _losses.EQLLoss):
    """``cytolt.losses.EQLLoss`` for mmdet configs."""


class EQLv2Loss(_SigmoidLossConfig, _losses.EQLv2Loss):
    """``cytolt.losses.EQLv2Loss`` for mmdet configs."""


class GradLibraLoss(_SigmoidLossConfig, _losses.GradLibraLoss):
    """``cytolt.losses.GradLibraLoss`` (a documented reconstruction) for mmdet configs."""


class FederatedLoss(_SigmoidLossConfig, _losses.FederatedLoss):
    """``cytolt.losses.FederatedLoss`` for mmdet configs."""


class BalancedBCELoss(_SigmoidLossConfig, _losses.BalancedBCELoss):
    """``cytolt.losses.BalancedBCELoss`` for mmdet configs."""


class DistributionBalancedLoss(_SigmoidLossConfig, _losses.DistributionBalancedLoss):
    """``cytolt.losses.DistributionBalancedLoss`` for mmdet configs."""


class CDBLoss(_losses.CDBLoss):
    """``cytolt.losses.CDBLoss`` for mmdet configs; ``use_sigmoid`` picks the sigmoid or softmax variant."""


class LogitAdjustedLoss(_losses.LogitAdjustedLoss):
    """``cytolt.losses.LogitAdjustedLoss`` for mmdet configs (softmax: ``use_sigmoid=False``)."""

    def __init__(self, *, use_sigmoid: bool = False, **kwargs: Any) -> None:
        if use_sigmoid:
            raise ValueError("LogitAdjustedLoss is a softmax loss: use_sigmoid must be False")
        super().__init__(**kwargs)


class SeesawLoss(_losses.SeesawLoss):
    """``cytolt.losses.SeesawLoss`` for mmdet configs (registered as ``CytoltSeesawLoss``).

    In a two-stage ``BBoxHead`` it asks for ``C + 2`` outputs (``get_cls_channels``), scores with
    ``P(fg) softmax(classes)`` and logs class / objectness accuracy, as mmdet's ``SeesawLoss``. In a one-stage
    softmax head (``C + 1`` outputs) the objectness is derived from the class and background logits (see
    ``cytolt.losses.seesaw.split_seesaw_logits``). ``return_dict=True`` returns the two terms apart, which
    ``BBoxHead`` logs; dense heads need the default, one tensor.
    """

    # mmdet's BBoxHead looks these up on its loss_cls.
    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def __init__(self, *, use_sigmoid: bool = False, return_dict: bool = False, **kwargs: Any) -> None:
        if use_sigmoid:
            raise ValueError("SeesawLoss is a softmax loss: use_sigmoid must be False")
        super().__init__(**kwargs)
        self.return_dict = return_dict

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes + 2

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return seesaw_scores(cls_score, self.num_classes)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        classes, objectness = split_seesaw_logits(cls_score, self.num_classes)
        foreground = labels < self.num_classes
        return {
            "acc_objectness": accuracy(objectness, (labels == self.num_classes).long()),
            "acc_classes": accuracy(classes[foreground], labels[foreground]),
        }

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
    ) -> Tensor | dict[str, Tensor]:
        parts = self.losses(logits, labels, weight, avg_factor, reduction_override)
        if self.return_dict:
            return parts
        return parts["loss_cls_classes"] + parts["loss_cls_objectness"]


# cytolt name -> adapter; one entry per row of cytolt.losses.LOSSES (checked below).
ADAPTERS: dict[str, type[nn.Module]] = {
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


def mmdet_name(name: str) -> str:
    """The name a cytolt loss has in mmdet's ``MODELS`` (``type=`` in a config)."""
    return RENAMED.get(name, name)


def _register() -> None:
    missing = set(_losses.LOSSES) ^ set(ADAPTERS)
    if missing:
        raise RuntimeError(f"cytolt.mm.losses: LOSSES and ADAPTERS disagree on {sorted(missing)}")
    for name, adapter in ADAPTERS.items():
        if not issubclass(adapter, _losses.LOSSES[name]):
            raise RuntimeError(f"cytolt.mm.losses: {adapter} does not adapt {_losses.LOSSES[name]}")
        if MODELS.module_dict.get(mmdet_name(name)) is adapter:  # already registered by an earlier import
            continue
        # force=False: a name mmdet (or another package) already uses raises instead of being replaced.
        MODELS.register_module(name=mmdet_name(name), module=adapter)


_register()

__all__ = [
    "ADAPTERS",
    "RENAMED",
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
    "mmdet_name",
]
