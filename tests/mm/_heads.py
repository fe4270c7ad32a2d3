"""Tiny mmdet heads for the score tests (test_gumbel, test_iif_mm): settings that keep every prediction, so the
scores a head emits can be compared one for one with the activation of its logits."""

from __future__ import annotations

import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

# No size filter, score_thr 0, NMS IoU above 1: post-processing keeps every anchor / (RoI, class) pair.
KEEP_ALL_DENSE = dict(
    nms_pre=1000, min_bbox_size=-1, score_thr=0.0, nms=dict(type="nms", iou_threshold=2.0), max_per_img=1000
)
KEEP_ALL_RCNN = ConfigDict(score_thr=0.0, nms=dict(type="nms", iou_threshold=2.0), max_per_img=100)
ROIS = torch.tensor([[0, 4.0, 4.0, 20.0, 20.0], [0, 30.0, 30.0, 50.0, 60.0]])


def dense_head(type: str, num_classes: int, loss_cls: dict, *, ratios=(1.0,), **extra) -> torch.nn.Module:
    """An 8-channel, one-conv anchor head at strides 8 and 16 for 32 x 32 images."""
    cfg = dict(
        type=type,
        num_classes=num_classes,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=2,
            scales_per_octave=1,
            ratios=list(ratios),
            strides=[8, 16],
        ),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=loss_cls,
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        test_cfg=KEEP_ALL_DENSE,
    )
    return MODELS.build(ConfigDict(cfg, **extra))


def dense_scores(head: torch.nn.Module, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(cls_scores per level, the scores predict_by_feat emits, sorted descending)`` for one 32 x 32 image."""
    meta = dict(img_shape=(32, 32), ori_shape=(32, 32), scale_factor=(1.0, 1.0), pad_shape=(32, 32))
    with torch.no_grad():
        cls_scores, bbox_preds = head(feats)
        result = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta], rescale=False)[0]
    return cls_scores, result.scores.sort(descending=True).values


def bbox_head(num_classes: int, loss_cls: dict | None = None, **extra) -> torch.nn.Module:
    """A 16-wide ``Shared2FCBBoxHead`` (or ``type=...``) on 4-channel 2 x 2 RoI features."""
    cfg = dict(
        type="Shared2FCBBoxHead",
        in_channels=4,
        fc_out_channels=16,
        roi_feat_size=2,
        num_classes=num_classes,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    )
    if loss_cls is not None:
        cfg["loss_cls"] = loss_cls
    cfg.update(extra)
    return MODELS.build(ConfigDict(cfg))


def rcnn_scores(head: torch.nn.Module, cls_score: torch.Tensor) -> torch.Tensor:
    """The scores ``predict_by_feat`` emits for two RoIs with these class logits, sorted descending."""
    bbox_pred = torch.zeros(ROIS.size(0), 4 * head.num_classes)
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    result = head.predict_by_feat((ROIS,), (cls_score,), (bbox_pred,), [meta], rcnn_test_cfg=KEEP_ALL_RCNN)[0]
    assert (result.labels < head.num_classes).all()  # never the background column
    return result.scores.sort(descending=True).values


def train_step(head: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One loss + backward of a ``bbox_head`` on six random RoIs (labels 0, 1, 2 and background)."""
    torch.manual_seed(0)
    cls_score, bbox_pred = head(torch.randn(6, 4, 2, 2))
    labels = torch.tensor([0, 1, 3, 3, 2, 3])
    losses = head.loss(
        cls_score, bbox_pred, torch.zeros(6, 5), labels, torch.ones(6), torch.zeros(6, 4), torch.zeros(6, 4)
    )
    losses["loss_cls"].backward()
    assert torch.isfinite(losses["loss_cls"])
    return losses
