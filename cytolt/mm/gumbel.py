"""mmdet glue for GOL (``cytolt.losses.gol``): the Gumbel loss, and heads that score with the Gumbel activation.

A detector trained with the Gumbel loss must also score with ``p = exp(-exp(-z))``; mmdet's heads would apply a
sigmoid (dense heads) or a softmax (``BBoxHead``). Registered in mmdet's ``MODELS`` on import:

- ``GumbelLoss``: ``cytolt.losses.GumbelLoss`` for dense heads (``use_sigmoid=True``: C outputs).
- ``GumbelRetinaHead``: ``RetinaHead`` whose test-time scores are Gumbel and whose classifier bias starts at the
  Gumbel prior ``-log(-log(prior_prob))``. ``GumbelDenseHeadMixin`` does the same for other sigmoid dense heads.
- ``RoIGumbelLoss``: the ``loss_cls`` of a two-stage ``BBoxHead``: C outputs (no background column, as the
  authors' code), Gumbel BCE, scores ``exp(-exp(-z))`` with a zero background column appended for mmdet's NMS.
- ``GumbelShared2FCBBoxHead``: ``Shared2FCBBoxHead`` with ``RoIGumbelLoss`` and the Gumbel prior bias.
"""

from __future__ import annotations

from typing import Any

import torch
from mmdet.models.dense_heads import RetinaHead
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import Tensor, nn

from cytolt.losses import gol
from cytolt.mm.losses import _SigmoidLossConfig
from cytolt.mm.lvis import RoISigmoidLoss

__all__ = [
    "GumbelDenseHeadMixin",
    "GumbelLoss",
    "GumbelRetinaHead",
    "GumbelShared2FCBBoxHead",
    "RoIGumbelLoss",
]

# A positive's Gumbel probability reaches 1/2 at z = -log(log 2): the accuracy threshold of RoIGumbelLoss.
_HALF = gol.gumbel_bias_init(0.5)


class GumbelLoss(_SigmoidLossConfig, gol.GumbelLoss):
    """``cytolt.losses.GumbelLoss`` for mmdet configs (``use_sigmoid=True``)."""


def _set_gumbel_bias(layer: nn.Module, prior_prob: float) -> None:
    """``layer.bias`` at the Gumbel prior, after mmengine's init (whose ``bias_prob`` is the sigmoid's)."""
    nn.init.constant_(layer.bias, gol.gumbel_bias_init(prior_prob))


class GumbelDenseHeadMixin:
    """For a sigmoid dense head: score with the Gumbel activation and start the classifier at a Gumbel prior.

    mmdet's dense-head post-processing applies a sigmoid to the class logits. The mixin hands it
    ``log(p / (1 - p))`` of the Gumbel probability instead (``cytolt.losses.gol.gumbel_log_odds``), so the
    sigmoid returns ``exp(-exp(-z))`` exactly and the rest (top-k, score threshold, NMS) is mmdet's. Put it before
    the head class: ``class GumbelFCOSHead(GumbelDenseHeadMixin, FCOSHead)`` with ``classifier_name = 'conv_cls'``.

    Args:
        prior_prob: initial Gumbel probability of every class (bias ``-log(-log(prior_prob))``: -1.527 at 0.01).
        **kwargs: the head's arguments; ``loss_cls`` must be ``GumbelLoss``.
    """

    classifier_name = "retina_cls"

    def __init__(self, *args: Any, prior_prob: float = 0.01, **kwargs: Any) -> None:
        gol.gumbel_bias_init(prior_prob)  # checks 0 < prior_prob < 1 before the head is built
        super().__init__(*args, **kwargs)
        if not isinstance(self.loss_cls, gol.GumbelLoss):
            raise ValueError(
                f"{type(self).__name__} scores with the Gumbel activation, so loss_cls must be GumbelLoss; "
                f"got {type(self.loss_cls).__name__}"
            )
        self.prior_prob = prior_prob

    def init_weights(self) -> None:
        first = not self.is_init  # mmengine initialises once; a second call must not reset a trained bias
        super().init_weights()
        if first:
            _set_gumbel_bias(getattr(self, self.classifier_name), self.prior_prob)

    def _predict_by_feat_single(self, cls_score_list: list[Tensor], *args: Any, **kwargs: Any) -> Any:
        # mmdet scores with cls_score.sigmoid(); sigmoid(gumbel_log_odds(z)) = exp(-exp(-z)).
        return super()._predict_by_feat_single(
            [gol.gumbel_log_odds(s) for s in cls_score_list], *args, **kwargs
        )


@MODELS.register_module()
class GumbelRetinaHead(GumbelDenseHeadMixin, RetinaHead):
    """mmdet's ``RetinaHead`` trained with ``GumbelLoss`` and scoring with ``exp(-exp(-z))`` (GOL, ECCV 2022)."""


@MODELS.register_module()
class RoIGumbelLoss(RoISigmoidLoss):
    """GOL's Gumbel BCE as the ``loss_cls`` of mmdet's two-stage ``BBoxHead``: one logit per class, Gumbel scores.

    The layout of ``RoISigmoidLoss`` (C outputs; a background RoI is an all-zero target row, the BCE is summed
    over classes and averaged over RoIs), with the Gumbel activation at test time: ``(R, C)`` logits become
    ``(R, C + 1)`` scores, ``exp(-exp(-z))`` and a zero background column (what mmdet's NMS expects).

    Args:
        num_classes: C, checked against the head's.
        clamp: training clamp of the logits (default the authors' ``(-4, 10)``), or ``None``.
        loss_weight: multiplies the loss.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        clamp: tuple[float, float] | None = gol.GUMBEL_CLAMP,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(
            loss=dict(type=GumbelLoss, num_classes=num_classes, clamp=clamp, loss_weight=loss_weight)
        )

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """(R, C) logits -> (R, C + 1) scores: per-class Gumbel probabilities, then a zero background column."""
        return torch.cat([gol.gumbel_cdf(cls_score), cls_score.new_zeros((cls_score.size(0), 1))], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Percent of RoIs labelled right; a RoI whose best Gumbel probability is < 0.5 predicts background."""
        best, pred = cls_score.max(dim=1)
        pred = torch.where(best >= _HALF, pred, torch.full_like(pred, cls_score.size(1)))
        return {"acc": (pred == labels).float().mean() * 100}


@MODELS.register_module()
class GumbelShared2FCBBoxHead(Shared2FCBBoxHead):
    """mmdet's ``Shared2FCBBoxHead`` for GOL: ``RoIGumbelLoss`` and a classifier bias at the Gumbel prior.

    Its test-time scores are ``exp(-exp(-z))`` per class (``RoIGumbelLoss.get_activation``, called by
    ``BBoxHead`` through its custom-classifier hooks), never a softmax.

    Args:
        prior_prob: initial Gumbel probability of every class; ``None`` keeps ``init_cfg``'s bias (e.g. the
            authors' constant -2 on LVIS, ``prior_prob = exp(-e^2) = 6.2e-4``).
        loss_cls: default ``dict(type='RoIGumbelLoss', num_classes=num_classes)``; must be a ``RoIGumbelLoss``.
        **kwargs: ``Shared2FCBBoxHead``'s arguments.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        prior_prob: float | None = 0.01,
        loss_cls: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if prior_prob is not None:
            gol.gumbel_bias_init(prior_prob)  # checks the range before the head is built
        loss_cls = loss_cls if loss_cls is not None else dict(type="RoIGumbelLoss", num_classes=num_classes)
        super().__init__(num_classes=num_classes, loss_cls=loss_cls, **kwargs)
        if not isinstance(self.loss_cls, RoIGumbelLoss):
            raise ValueError(
                f"GumbelShared2FCBBoxHead needs loss_cls RoIGumbelLoss (its scores are Gumbel); "
                f"got {type(self.loss_cls).__name__}"
            )
        self.prior_prob = prior_prob

    def init_weights(self) -> None:
        first = not self.is_init
        super().init_weights()
        if first and self.prior_prob is not None:
            _set_gumbel_bias(self.fc_cls, self.prior_prob)


if MODELS.module_dict.get("GumbelLoss") is not GumbelLoss:
    # force=False: a name mmdet (or another package) already uses raises instead of being replaced.
    MODELS.register_module(name="GumbelLoss", module=GumbelLoss)
