"""mmdet glue for Causal TDE (``cytolt.losses.tde``, Tang et al., NeurIPS 2020): the class predictor of a
two-stage ``BBoxHead``, registered in ``MODELS`` as ``TDEPredictor``.

``cls_predictor_cfg=dict(type='TDEPredictor')`` replaces the head's ``nn.Linear`` by the normalised multi-head
classifier. In training its logits go to the head's softmax cross-entropy as usual and the moving-average RoI
feature is kept in ``fc_cls.mean_feature`` (saved with the model). At test it returns ``log`` of the
background-exempted TDE probabilities, so mmdet's softmax in ``BBoxHead`` scores with them and everything after
(score threshold, NMS, a Cascade's averaging of its stages' logits) is mmdet's.
"""

from __future__ import annotations

from mmdet.registry import MODELS

from cytolt.losses import tde

__all__ = ["TDEPredictor"]


@MODELS.register_module()
class TDEPredictor(tde.CausalNormClassifier):
    """``cytolt.losses.tde.CausalNormClassifier`` as a ``cls_predictor_cfg`` (``in_features``, ``out_features`` from
    the head: ``C + 1`` for a softmax loss, background last).

    Args:
        in_features, out_features: given by ``BBoxHead``.
        num_heads, tau, gamma, alpha, momentum, background_exempted, use_effect: the classifier's (defaults 2, 16,
            1/32, 3, 0.9, True, True).
    """
