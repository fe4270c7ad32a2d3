"""mmdet glue for Causal TDE (``cytolt.losses.tde``, Tang et al., NeurIPS 2020): the class predictor of a
two-stage ``BBoxHead`` and the box head that feeds it the foreground mask, registered in ``MODELS``.

- ``TDEPredictor`` (``cls_predictor_cfg=dict(type='TDEPredictor')``) replaces the head's ``nn.Linear`` by the
  normalised multi-head classifier. In training its logits go to the head's softmax cross-entropy as usual; at
  test it returns ``log`` of the background-exempted TDE probabilities, so mmdet's softmax in ``BBoxHead`` scores
  with them and everything after (score threshold, NMS, a Cascade's averaging of its stages' logits) is mmdet's.
- ``TDEShared2FCBBoxHead``: ``Shared2FCBBoxHead`` with a ``TDEPredictor`` whose moving-average feature
  (``fc_cls.mean_feature``, saved with the model) averages the foreground RoIs only, as the authors' detection
  code: the head's ``loss`` knows the RoI labels and hands the predictor the foreground mask.
"""

from __future__ import annotations

from typing import Any

from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import Tensor

from cytolt.losses import tde

__all__ = ["TDEPredictor", "TDEShared2FCBBoxHead"]


@MODELS.register_module()
class TDEPredictor(tde.CausalNormClassifier):
    """``cytolt.losses.tde.CausalNormClassifier`` as a ``cls_predictor_cfg`` (``in_features``, ``out_features`` from
    the head: ``C + 1`` for a softmax loss, background last).

    Args:
        in_features, out_features: given by ``BBoxHead``.
        num_heads, tau, gamma, alpha, momentum, background_exempted, use_effect: the classifier's (defaults 2, 16,
            1/32, 3, 0.9, True, True; the TDE configs use the authors' detection values alpha 1.5, momentum
            0.9998).
    """


@MODELS.register_module()
class TDEShared2FCBBoxHead(Shared2FCBBoxHead):
    """mmdet's ``Shared2FCBBoxHead`` with Causal TDE's classifier, averaging foreground RoI features only.

    Args:
        tde: ``TDEPredictor`` arguments (``alpha``, ``momentum``, ``num_heads``, ...); default the authors' LVIS
            values ``alpha = 1.5``, ``momentum = 0.9998``.
        **kwargs: ``Shared2FCBBoxHead``'s arguments; ``loss_cls`` must be a softmax loss (``C + 1`` outputs).
    """

    def __init__(self, *, tde: dict | None = None, **kwargs: Any) -> None:
        predictor = dict(type="TDEPredictor", **{**tde_defaults(), **(tde or {})})
        super().__init__(cls_predictor_cfg=predictor, **kwargs)
        if self.custom_cls_channels:
            raise ValueError(
                f"TDEShared2FCBBoxHead needs a softmax loss_cls with C + 1 outputs; "
                f"{type(self.loss_cls).__name__} declares its own channels"
            )
        self.fc_cls.defer_update = True

    def loss(
        self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor, labels: Tensor, *args: Any, **kwargs: Any
    ) -> dict:
        # labels (R,) in 0..C (C = background), aligned with the rows fc_cls saw in this training forward.
        if self.training and self.fc_cls._pending is not None:
            self.fc_cls.update_pending((labels < self.num_classes).float())
        return super().loss(cls_score, bbox_pred, rois, labels, *args, **kwargs)


def tde_defaults() -> dict[str, float]:
    """The authors' detection settings of the TDE classifier (``cytolt.losses.tde``)."""
    return {"alpha": tde.DETECTION_ALPHA, "momentum": tde.DETECTION_MOMENTUM}
