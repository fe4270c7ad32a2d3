"""Tests for cytolt.mm.losses: registration, config builds, parity with mmdet's FocalLoss and SeesawLoss, and a
narrow RetinaNet-R18 that trains one step with every loss."""

from __future__ import annotations

import pytest
import torch
from mmdet.models.losses import FocalLoss as MMFocalLoss
from mmdet.models.losses import SeesawLoss as MMSeesawLoss
from mmdet.registry import MODELS

import cytolt.mm  # noqa: F401  (registers cytolt into mmdet's registries)
from cytolt.losses import LOSSES
from cytolt.mm.losses import ADAPTERS, mmdet_name

C = 3


@pytest.fixture(scope="module", autouse=True)
def _mmdet_scope() -> None:
    # Nested configs (data preprocessor, assigner, ...) resolve in mmdet's registries only under its default scope.
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


# cytolt name -> extra config keys for a 3-class problem
CONFIGS: dict[str, dict] = {
    "FocalLoss": dict(use_sigmoid=True),
    "EqualizedFocalLoss": dict(use_sigmoid=True, num_classes=C),
    "EQLLoss": dict(use_sigmoid=True, image_freq=[0.6, 0.3, 0.0005]),
    "EQLv2Loss": dict(use_sigmoid=True, num_classes=C),
    "GradLibraLoss": dict(use_sigmoid=True, num_classes=C),
    "SeesawLoss": dict(use_sigmoid=False, num_classes=C),
    "CDBLoss": dict(use_sigmoid=False, num_classes=C),
    "FederatedLoss": dict(use_sigmoid=True, image_count=[60, 30, 1], num_sample_classes=2),
    "BalancedBCELoss": dict(use_sigmoid=True, class_prior=[0.01, 0.005, 0.001]),
    "LogitAdjustedLoss": dict(use_sigmoid=False, class_prior=[0.6, 0.3, 0.1]),
    "DistributionBalancedLoss": dict(use_sigmoid=True, class_freq=[60, 30, 1], num_samples=80),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_builds_from_config_dict(name: str) -> None:
    loss = MODELS.build(dict(type=mmdet_name(name), **CONFIGS[name]))
    assert isinstance(loss, LOSSES[name])
    assert type(loss) is ADAPTERS[name]
    assert loss.use_sigmoid == CONFIGS[name]["use_sigmoid"]


def test_names_mmdet_already_uses_are_left_to_mmdet() -> None:
    assert MODELS.get("FocalLoss") is MMFocalLoss
    assert MODELS.get("SeesawLoss") is MMSeesawLoss
    assert MODELS.get("CytoltFocalLoss") is ADAPTERS["FocalLoss"]
    assert MODELS.get("GradLibraLoss") is ADAPTERS["GradLibraLoss"]


def test_config_mistakes_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="set use_sigmoid=True"):
        MODELS.build(dict(type="GradLibraLoss", num_classes=C, use_sigmoid=False))
    loss = MODELS.build(dict(type="GradLibraLoss", num_classes=C, use_sigmoid=True))
    with pytest.raises(ValueError, match="add use_sigmoid=True to loss_cls"):
        loss(torch.zeros(4, C + 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="softmax loss"):
        MODELS.build(dict(type="CytoltSeesawLoss", num_classes=C, use_sigmoid=True))


def test_focal_loss_matches_mmdet() -> None:
    torch.manual_seed(0)
    logits = torch.randn(20, C)
    labels = torch.randint(0, C + 1, (20,))
    weight = torch.rand(20)
    ours = MODELS.build(dict(type="CytoltFocalLoss", use_sigmoid=True, loss_weight=2.0))
    theirs = MMFocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0)
    for kwargs in (dict(), dict(avg_factor=7.0), dict(reduction_override="none")):
        torch.testing.assert_close(
            ours(logits, labels, weight, **kwargs), theirs(logits, labels, weight, **kwargs)
        )


@pytest.mark.parametrize("avg_factor", [None, 6.0])
def test_seesaw_matches_mmdet(avg_factor: float | None) -> None:
    ours = MODELS.build(dict(type="CytoltSeesawLoss", num_classes=C, return_dict=True))
    theirs = MMSeesawLoss(num_classes=C, p=0.8, q=2.0, eps=0.01, return_dict=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # counts accumulate over calls; the factors change with them
        logits = torch.randn(16, C + 2, generator=g) * 2
        labels = torch.multinomial(torch.tensor([0.5, 0.3, 0.05, 0.15]), 16, replacement=True, generator=g)
        weight = torch.rand(16, generator=g)
        a = ours(logits, labels, weight, avg_factor=avg_factor)
        b = theirs(logits, labels, weight, avg_factor=avg_factor)
        for key in ("loss_cls_classes", "loss_cls_objectness"):
            torch.testing.assert_close(a[key], b[key], msg=key)
        torch.testing.assert_close(ours.cum_samples, theirs.cum_samples)
    torch.testing.assert_close(ours.get_activation(logits), theirs.get_activation(logits))
    for key, value in theirs.get_accuracy(logits, labels).items():
        torch.testing.assert_close(ours.get_accuracy(logits, labels)[key], value)
    assert ours.get_cls_channels(C) == theirs.get_cls_channels(C) == C + 2


def _retinanet(loss_cls: dict) -> torch.nn.Module:
    """Narrow RetinaNet-R18 (ResNet-18, 8 base channels, FPN 16, 1-conv head) for 64x64 images."""
    cfg = dict(
        type="RetinaNet",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[0.0] * 3, std=[1.0] * 3),
        backbone=dict(type="ResNet", depth=18, base_channels=8, out_indices=(1, 2, 3), norm_eval=False),
        neck=dict(type="FPN", in_channels=[16, 32, 64], out_channels=16, num_outs=3),
        bbox_head=dict(
            type="RetinaHead",
            num_classes=C,
            in_channels=16,
            feat_channels=16,
            stacked_convs=1,
            anchor_generator=dict(
                type="AnchorGenerator",
                octave_base_scale=2,
                scales_per_octave=1,
                ratios=[1.0],
                strides=[8, 16, 32],
            ),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=loss_cls,
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        train_cfg=dict(
            assigner=dict(
                type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1
            ),
            sampler=dict(type="PseudoSampler"),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        test_cfg=dict(
            nms_pre=100,
            min_bbox_size=0,
            score_thr=0.0,
            nms=dict(type="nms", iou_threshold=0.5),
            max_per_img=10,
        ),
    )
    torch.manual_seed(0)
    from mmengine.config import ConfigDict

    return MODELS.build(ConfigDict(cfg))  # heads read train_cfg / test_cfg by attribute


def _batch() -> tuple[torch.Tensor, list]:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    samples = []
    for boxes, labels in (
        ([[4.0, 4.0, 24.0, 28.0], [30.0, 30.0, 60.0, 58.0]], [0, 2]),
        ([[10.0, 8.0, 40.0, 36.0]], [1]),
    ):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(64, 64),
                ori_shape=(64, 64),
                pad_shape=(64, 64),
                batch_input_shape=(64, 64),
                scale_factor=(1.0, 1.0),
            )
        )
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
        samples.append(sample)
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), samples


@pytest.mark.parametrize(
    "name, extra",
    [(name, {}) for name in sorted(LOSSES)] + [("CDBLoss", dict(use_sigmoid=True, alpha=0.25, gamma=2.0))],
)
def test_retinanet_head_trains_one_step(name: str, extra: dict) -> None:
    torch.set_num_threads(1)
    model = _retinanet(dict(type=mmdet_name(name), **{**CONFIGS[name], **extra})).train()
    head = model.bbox_head
    sigmoid = head.loss_cls.use_sigmoid
    assert head.cls_out_channels == (C if sigmoid else C + 1)
    inputs, samples = _batch()
    losses = model.loss(inputs, samples)
    total, _ = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total) and total > 0
    grad = head.retina_cls.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        results = model.predict(inputs, samples)
    assert len(results) == 2 and results[0].pred_instances.scores.numel() > 0


def test_seesaw_in_a_two_stage_bbox_head() -> None:
    head = MODELS.build(
        dict(
            type="Shared2FCBBoxHead",
            in_channels=4,
            fc_out_channels=16,
            roi_feat_size=2,
            num_classes=C,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            reg_class_agnostic=True,
            loss_cls=dict(type="CytoltSeesawLoss", num_classes=C, return_dict=True),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        )
    )
    assert head.fc_cls.out_features == C + 2
    torch.manual_seed(0)
    cls_score, bbox_pred = head(torch.randn(6, 4, 2, 2))
    labels = torch.tensor([0, 1, 3, 3, 2, 3])
    losses = head.loss(
        cls_score, bbox_pred, torch.zeros(6, 5), labels, torch.ones(6), torch.zeros(6, 4), torch.zeros(6, 4)
    )
    assert {"loss_cls_classes", "loss_cls_objectness", "acc_classes", "acc_objectness"} <= set(losses)
    (losses["loss_cls_classes"] + losses["loss_cls_objectness"]).backward()
    assert head.fc_cls.weight.grad.abs().sum() > 0
