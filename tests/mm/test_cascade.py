"""cytolt/mm/cascade.py: SharedConfigCascadeRoIHead builds mmdet's per-stage box heads from one config, each stage
with its own target stds and its own modules (and loss state)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.models.roi_heads import CascadeRoIHead  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

import cytolt.mm  # noqa: E402,F401  (registers cytolt into mmdet's registries)
from cytolt.mm.cascade import stage_bbox_heads  # noqa: E402

STDS = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
HEAD = dict(
    type="Shared2FCBBoxHead",
    in_channels=4,
    fc_out_channels=16,
    roi_feat_size=2,
    num_classes=3,
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4),
    reg_class_agnostic=True,
    loss_cls=dict(type="RoISigmoidLoss", loss=dict(type="EQLv2Loss", num_classes=3)),
    loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
)
EXTRACTOR = dict(
    type="SingleRoIExtractor",
    roi_layer=dict(type="RoIAlign", output_size=2, sampling_ratio=0),
    out_channels=4,
    featmap_strides=[8],
)


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def _roi_head(type: str, bbox_head, **extra) -> torch.nn.Module:
    cfg = dict(
        type=type,
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=EXTRACTOR,
        bbox_head=bbox_head,
    )
    return MODELS.build(ConfigDict(cfg, **extra))


def test_stages_get_their_own_stds_and_their_own_loss_state() -> None:
    head = _roi_head("SharedConfigCascadeRoIHead", HEAD, stage_target_stds=STDS)
    assert len(head.bbox_head) == 3
    for stage, stds in zip(head.bbox_head, STDS, strict=True):
        assert list(stage.bbox_coder.stds) == pytest.approx(stds)
    losses = [stage.loss_cls.loss for stage in head.bbox_head]
    assert len({id(loss) for loss in losses}) == 3  # separate EQLv2 statistics per stage
    losses[0].pos_grad.fill_(1.0)
    assert losses[1].pos_grad.sum() == 0


def test_equals_mmdets_cascade_head_built_from_the_three_configs() -> None:
    ours = _roi_head("SharedConfigCascadeRoIHead", HEAD, stage_target_stds=STDS)
    theirs = _roi_head(
        "CascadeRoIHead", [dict(HEAD, bbox_coder=dict(HEAD["bbox_coder"], target_stds=s)) for s in STDS]
    )
    assert isinstance(ours, CascadeRoIHead)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    for a, b in zip(ours.bbox_head, theirs.bbox_head, strict=True):
        assert a.bbox_coder.stds == b.bbox_coder.stds


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="2 stage_target_stds for 3 stages"):
        _roi_head("SharedConfigCascadeRoIHead", HEAD, stage_target_stds=STDS[:2])
    with pytest.raises(ValueError, match="4 values"):
        stage_bbox_heads(HEAD, [[0.1, 0.2]])
    with pytest.raises(ValueError, match="needs a bbox_coder"):
        stage_bbox_heads({k: v for k, v in HEAD.items() if k != "bbox_coder"}, STDS)


@pytest.mark.parametrize(
    "variant, loss",
    [("ce", "CrossEntropyLoss"), ("eql", "EQLLoss"), ("eqlv2", "EQLv2Loss"), ("seesaw", "CytoltSeesawLoss")]
    + [("federated", "FederatedLoss")],
)
def test_tct_cascade_variants_put_their_loss_in_every_stage(variant: str, loss: str) -> None:
    from pathlib import Path

    from mmengine.config import Config

    root = Path(__file__).resolve().parents[2]
    roi = Config.fromfile(str(root / f"configs/tct/cascade_rcnn_r18_{variant}.py")).model.roi_head
    assert roi.type == "SharedConfigCascadeRoIHead" and roi.num_stages == 3
    stages = stage_bbox_heads(roi.bbox_head, roi.stage_target_stds)
    for stage, stds in zip(stages, STDS, strict=True):
        inner = stage["loss_cls"].get("loss", stage["loss_cls"])  # RoISigmoidLoss wraps the sigmoid losses
        assert inner["type"] == loss and stage["bbox_coder"]["target_stds"] == stds
