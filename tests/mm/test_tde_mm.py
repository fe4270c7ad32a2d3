"""cytolt/mm/tde.py: Causal TDE in a two-stage box head. The predictor builds from cls_predictor_cfg, trains a step
(keeping its moving-average feature), and the scores the head emits at test are the background-exempted TDE
probabilities, not the softmax of the plain logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.losses.tde import background_exempted_probs, causal_norm_logits, tde_logits  # noqa: E402
from cytolt.mm.tde import TDEPredictor  # noqa: E402
from tests.mm._heads import ROIS, bbox_head, rcnn_scores, train_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
C = 3
TDE = dict(type="TDEPredictor", num_heads=2)


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def test_head_trains_a_step_and_keeps_the_moving_average() -> None:
    head = bbox_head(C, cls_predictor_cfg=TDE)
    assert isinstance(head.fc_cls, TDEPredictor) and head.fc_cls.out_features == C + 1
    head.train()
    train_step(head)
    assert head.fc_cls.weight.grad is not None
    assert head.fc_cls.mean_feature.abs().sum() > 0
    assert "fc_cls.mean_feature" in head.state_dict()


def test_tde_head_averages_foreground_rois_only() -> None:
    from cytolt.losses.tde import DETECTION_ALPHA, DETECTION_MOMENTUM

    head = bbox_head(C, type="TDEShared2FCBBoxHead")
    assert (head.fc_cls.alpha, head.fc_cls.momentum) == (DETECTION_ALPHA, DETECTION_MOMENTUM) == (1.5, 0.9998)
    torch.manual_seed(0)
    feats = torch.randn(6, 4, 2, 2)
    with torch.no_grad():
        x = head.shared_fcs[1](head.shared_fcs[0](feats.flatten(1)).relu()).relu()
    head.train()
    torch.manual_seed(0)
    train_step(head)  # the same six RoIs; labels 0, 1, 3 (background), 3, 2, 3
    torch.testing.assert_close(head.fc_cls.mean_feature, x[[0, 1, 4]].mean(0))
    assert head.fc_cls._pending is None
    with pytest.raises(ValueError, match="needs a softmax loss_cls"):
        bbox_head(C, dict(type="CytoltSeesawLoss", num_classes=C), type="TDEShared2FCBBoxHead")


def test_test_scores_are_background_exempted_tde_probabilities() -> None:
    torch.manual_seed(0)
    head = bbox_head(C, cls_predictor_cfg=TDE)
    head.train()
    head(torch.randn(8, 4, 2, 2))  # one training forward fills the moving average
    head.eval()
    feats = torch.randn(ROIS.size(0), 4, 2, 2)
    with torch.no_grad():
        cls_score, _ = head(feats)
        x = head.shared_fcs[1](head.shared_fcs[0](feats.flatten(1)).relu()).relu()
        w, m = head.fc_cls.weight, head.fc_cls.mean_feature
        expected = background_exempted_probs(causal_norm_logits(x, w), tde_logits(x, w, m))
        plain = torch.softmax(causal_norm_logits(x, w), 1)
    torch.testing.assert_close(torch.softmax(cls_score, 1), expected)
    got = rcnn_scores(head, cls_score)
    torch.testing.assert_close(got, expected[:, :C].flatten().sort(descending=True).values)
    assert not torch.allclose(got, plain[:, :C].flatten().sort(descending=True).values)


def test_tct_config_trains_with_sgd_momentum() -> None:
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / "configs/tct/cascade_rcnn_r18_tde.py"))
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)
    head = cfg.model.roi_head.bbox_head
    assert head.type == "TDEShared2FCBBoxHead" and (head.tde.alpha, head.tde.momentum) == (1.5, 0.9998)
