"""cytolt/mm/lvis.py: category statistics, RoISigmoidLoss in mmdet's BBoxHead, NorCal head, ClassAwareMixDataset,
retarget_config."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.registry import DATA_SAMPLERS, MODELS  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402

from cytolt.calibration import norcal  # noqa: E402
from cytolt.mm.lvis import (  # noqa: E402
    ClassAwareMixDataset,
    RoISigmoidLoss,
    eql_image_freq,
    lvis_category_stats,
    retarget_config,
)

# Three images; category 7 (listed first, so label 0) in images 1 and 2 with three instances, category 3
# (label 1) once in image 3; image 4 has no annotation.
TINY = {
    "images": [{"id": i} for i in (1, 2, 3, 4)],
    "categories": [
        {"id": 7, "name": "seven", "frequency": "f"},
        {"id": 3, "name": "three", "frequency": "r"},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7},
        {"id": 2, "image_id": 1, "category_id": 7},
        {"id": 3, "image_id": 2, "category_id": 7},
        {"id": 4, "image_id": 3, "category_id": 3},
    ],
}


@pytest.fixture
def tiny_ann(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(TINY))
    return path


def test_category_stats_count_images_and_instances_in_file_order(tiny_ann):
    stats = lvis_category_stats(tiny_ann)
    assert stats.ids == (7, 3) and stats.names == ("seven", "three") and stats.frequency == ("f", "r")
    assert stats.images_per_class.tolist() == [2, 1]
    assert stats.instances_per_class.tolist() == [3, 1]
    assert stats.num_images == 4
    assert stats.image_freq.tolist() == [0.5, 0.25]  # 2/4, 1/4


def test_category_stats_follow_a_changed_file(tiny_ann):
    assert lvis_category_stats(tiny_ann).instances_per_class.tolist() == [3, 1]
    data = dict(TINY, annotations=TINY["annotations"] + [{"id": 5, "image_id": 4, "category_id": 3}])
    tiny_ann.write_text(json.dumps(data))
    os.utime(tiny_ann, ns=(1, 2))  # a different mtime, whatever the clock's resolution
    stats = lvis_category_stats(tiny_ann)
    assert stats.instances_per_class.tolist() == [3, 2] and stats.images_per_class.tolist() == [2, 2]


def test_category_stats_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        lvis_category_stats(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(TINY, annotations=[{"id": 1, "image_id": 1, "category_id": 99}])))
    with pytest.raises(ValueError, match="unknown category_id 99"):
        lvis_category_stats(bad)


# ---------------------------------------------------------------------------------------------- RoISigmoidLoss


def test_roi_sigmoid_loss_fills_dataset_statistics(tiny_ann):
    eql = MODELS.build(dict(type="RoISigmoidLoss", loss=dict(type="EQLLoss"), train_ann_file=str(tiny_ann)))
    # The authors' f_j: images with the class over the 3 images that have an annotation (image 4 has none).
    assert eql.loss.image_freq.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert eql_image_freq(tiny_ann).tolist() == pytest.approx([2 / 3, 1 / 3])
    fed = MODELS.build(
        dict(type="RoISigmoidLoss", loss=dict(type="FederatedLoss"), train_ann_file=str(tiny_ann))
    )
    assert fed.loss.sampling_weight.tolist() == pytest.approx([2**0.5, 1.0])
    with pytest.raises(ValueError, match="train_ann_file"):
        RoISigmoidLoss(loss=dict(type="EQLLoss"))
    with pytest.raises(ValueError, match="only used by"):
        RoISigmoidLoss(loss=dict(type="EQLv2Loss", num_classes=2), train_ann_file=str(tiny_ann))
    with pytest.raises(ValueError, match="not both"):
        RoISigmoidLoss(loss=dict(type="EQLLoss", image_freq=[0.1, 0.2]), train_ann_file=str(tiny_ann))


def test_roi_sigmoid_loss_is_the_inner_loss():
    torch.manual_seed(0)
    wrapped = RoISigmoidLoss(loss=dict(type="EQLv2Loss", num_classes=4))
    inner = MODELS.build(dict(type="EQLv2Loss", num_classes=4, use_sigmoid=True))
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 4, 4, 3, 2])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    assert torch.allclose(
        wrapped(logits, labels, weight, avg_factor=5.0), inner(logits, labels, weight, avg_factor=5.0)
    )
    assert torch.equal(wrapped.loss.pos_grad, inner.pos_grad)  # the same state update


def test_roi_sigmoid_loss_scores_and_accuracy():
    loss = RoISigmoidLoss(loss=dict(type="EQLv2Loss", num_classes=3))
    logits = torch.tensor([[-3.0, 4.0, -3.0], [-2.0, -3.0, -4.0], [5.0, -1.0, -1.0]])
    scores = loss.get_activation(logits)
    assert scores.shape == (3, 4)
    assert torch.allclose(scores[:, :3], logits.sigmoid()) and torch.all(scores[:, 3] == 0)
    # Row 0 predicts class 1 (right), row 1 predicts background (max sigmoid < 0.5; right), row 2 class 0 (wrong).
    acc = loss.get_accuracy(logits, torch.tensor([1, 3, 2]))["acc"]
    assert acc.item() == pytest.approx(200 / 3)


def _bbox_head(loss_cls: dict, num_classes: int, **extra) -> torch.nn.Module:
    return MODELS.build(
        dict(
            type=extra.pop("type", "Shared2FCBBoxHead"),
            in_channels=4,
            fc_out_channels=16,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            loss_cls=loss_cls,
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
            **extra,
        )
    )


def test_bbox_head_with_roi_sigmoid_loss_has_one_logit_per_class_and_predicts_classes_only():
    head = _bbox_head(dict(type="RoISigmoidLoss", loss=dict(type="EQLv2Loss", num_classes=3)), 3)
    assert head.fc_cls.out_features == 3  # no background column
    rois = torch.tensor([[0, 4.0, 4.0, 20.0, 20.0], [0, 30.0, 30.0, 50.0, 60.0]])
    cls_score = torch.tensor([[-4.0, 2.0, -4.0], [-4.0, -4.0, -4.0]])
    bbox_pred = torch.zeros(2, 12)
    cfg = ConfigDict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    result = head.predict_by_feat((rois,), (cls_score,), (bbox_pred,), [meta], rcnn_test_cfg=cfg)[0]
    # Only RoI 0's class 1 clears 0.05 (sigmoid(2) = 0.88); sigmoid(-4) = 0.018 does not; never "background".
    assert result.labels.tolist() == [1]
    assert result.scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item()])
    with pytest.raises(ValueError, match="built for 3"):
        _bbox_head(dict(type="RoISigmoidLoss", loss=dict(type="EQLv2Loss", num_classes=3)), 4)


def test_eqlv2_objectness_head_has_a_background_sigmoid_and_the_authors_test_scores():
    """C + 1 outputs; at test time class scores are sigmoid(z_c) (1 - sigmoid(z_bg)) (Tan et al.'s code)."""
    loss = dict(type="RoISigmoidLoss", loss=dict(type="EQLv2Loss", num_classes=3, objectness=True))
    head = _bbox_head(loss, 3)
    assert head.fc_cls.out_features == 4
    rois = torch.tensor([[0, 4.0, 4.0, 20.0, 20.0], [0, 30.0, 30.0, 50.0, 60.0]])
    # RoI 0: class 1 at sigmoid(2) = 0.881, background sigmoid(0) = 0.5 -> 0.440. RoI 1: class 1 also 0.881,
    # but background sigmoid(3) = 0.953 -> 0.042, under the 0.05 threshold.
    cls_score = torch.tensor([[-9.0, 2.0, -9.0, 0.0], [-9.0, 2.0, -9.0, 3.0]])
    cfg = ConfigDict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    result = head.predict_by_feat((rois,), (cls_score,), (torch.zeros(2, 12),), [meta], rcnn_test_cfg=cfg)[0]
    s2 = torch.sigmoid(torch.tensor(2.0)).item()
    assert result.labels.tolist() == [1]
    assert result.scores.tolist() == pytest.approx([s2 * 0.5])
    activation = head.loss_cls.get_activation(cls_score)
    assert activation[:, 3].tolist() == pytest.approx([0.5, torch.sigmoid(torch.tensor(3.0)).item()])
    # Accuracy: RoI 0's best class score 0.44 < 0.5 -> background (wrong for label 1); RoI 1 -> background (right).
    assert head.loss_cls.get_accuracy(cls_score, torch.tensor([1, 3]))["acc"].item() == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------- NorCal


def test_norcal_head_scores_are_cytolt_norcal():
    torch.manual_seed(1)
    counts = [1000, 30, 2]
    ce = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    head = _bbox_head(ce, 3, type="NorCalShared2FCBBoxHead", gamma=0.7, class_counts=counts)
    rois = torch.tensor([[0, 4.0, 4.0, 20.0, 20.0], [0, 30.0, 30.0, 50.0, 60.0], [0, 1.0, 1.0, 9.0, 9.0]])
    cls_score = torch.randn(3, 4) * 3
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    # rcnn_test_cfg=None returns the raw (R, C + 1) scores, before NMS.
    out = head._predict_by_feat_single(rois, cls_score, torch.zeros(3, 12), meta, rcnn_test_cfg=None)
    expected = norcal(cls_score, torch.tensor(counts, dtype=torch.float32), 0.7)
    assert torch.allclose(out.scores, expected, atol=1e-6)
    assert not torch.allclose(out.scores, cls_score.softmax(1), atol=1e-3)  # it did calibrate
    plain = _bbox_head(ce, 3, type="NorCalShared2FCBBoxHead", gamma=0.0, class_counts=counts)
    out0 = plain._predict_by_feat_single(rois, cls_score, torch.zeros(3, 12), meta, rcnn_test_cfg=None)
    assert torch.allclose(out0.scores, cls_score.softmax(1), atol=1e-6)


def test_norcal_head_loads_a_plain_head_checkpoint(tiny_ann):
    ce = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    plain = _bbox_head(ce, 2)
    head = _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=0.5, train_ann_file=str(tiny_ann))
    assert head.class_counts.tolist() == [2.0, 1.0]  # the authors' N_c: images with 'seven', 'three'
    head.load_state_dict(plain.state_dict(), strict=True)  # class_counts is not part of the state
    by_instances = _bbox_head(
        ce, 2, type="NorCalShared2FCBBoxHead", gamma=0.5, train_ann_file=str(tiny_ann), count_by="instances"
    )
    assert by_instances.class_counts.tolist() == [3.0, 1.0]  # the labelled variant: annotations


def test_norcal_head_with_image_counts_hand_worked(tiny_ann):
    """Counts [2, 1], gamma 1, logits (0, 0, 0): foreground exp(0)/2 and exp(0)/1, background 1, renormalised by
    2.5: (0.2, 0.4, 0.4)."""
    ce = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    head = _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=1.0, train_ann_file=str(tiny_ann))
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    rois = torch.tensor([[0, 4.0, 4.0, 20.0, 20.0]])
    out = head._predict_by_feat_single(rois, torch.zeros(1, 3), torch.zeros(1, 8), meta, rcnn_test_cfg=None)
    assert out.scores.tolist()[0] == pytest.approx([0.2, 0.4, 0.4])


def test_norcal_head_refuses_bad_setups(tiny_ann):
    ce = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=0.5)
    with pytest.raises(ValueError, match="3 class counts for a head with 2"):
        _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=0.5, class_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="gamma"):
        _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=-1.0, class_counts=[1, 2])
    with pytest.raises(ValueError, match="count_by"):
        _bbox_head(ce, 2, type="NorCalShared2FCBBoxHead", gamma=0.5, class_counts=[1, 2], count_by="boxes")
    seesaw = dict(type="CytoltSeesawLoss", num_classes=2)
    with pytest.raises(ValueError, match="softmax"):
        _bbox_head(seesaw, 2, type="NorCalShared2FCBBoxHead", gamma=0.5, class_counts=[1, 2])


# ---------------------------------------------------------------------------------------------- datasets


def test_class_aware_mix_dataset_lets_repeat_factor_sampling_read_classes(mini_lvis):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import LVISV1Dataset, MultiImageMixDataset

    root, summary = mini_lvis
    inner = dict(
        type=LVISV1Dataset,
        data_root=str(root),
        ann_file="annotations/lvis_v1_train.json",
        data_prefix=dict(img=""),
        metainfo=dict(classes=tuple(summary["classes"])),
        pipeline=[dict(type=LoadImageFromFile)],
    )
    mixed = ClassAwareMixDataset(dataset=inner, pipeline=[])
    assert [mixed.get_cat_ids(i) for i in range(len(mixed))] == [
        mixed.dataset.get_cat_ids(i) for i in range(len(mixed))
    ]
    sampler = DATA_SAMPLERS.build(
        dict(type="RepeatFactorSampler", thr=0.5), default_args=dict(dataset=mixed, seed=0)
    )
    assert len(sampler.repeat_factors) == len(mixed) and sampler.repeat_factors.max() > 1
    with pytest.raises(TypeError, match="get_cat_ids"):  # what mmdet's own wrapper gives the sampler
        DATA_SAMPLERS.build(
            dict(type="RepeatFactorSampler"),
            default_args=dict(dataset=MultiImageMixDataset(dataset=inner, pipeline=[]), seed=0),
        )


# ---------------------------------------------------------------------------------------------- configs


def _toy_config() -> Config:
    return Config(
        dict(
            data_root="data/lvis_v1/",
            model=dict(
                rpn_head=dict(num_classes=1),
                roi_head=dict(
                    bbox_head=dict(num_classes=1203, loss_cls=dict(type="X", num_classes=1203)),
                    mask_head=dict(num_classes=1203),
                ),
                loss_file=dict(train_ann_file="data/lvis_v1/annotations/lvis_v1_train.json"),
            ),
            train_dataloader=dict(
                dataset=dict(
                    type="ClassAwareMixDataset",
                    dataset=dict(ann_file="annotations/x.json", data_root="data/lvis_v1/", pipeline=[]),
                    pipeline=[],
                )
            ),
            val_evaluator=dict(type="LVISMetric", ann_file="data/lvis_v1/annotations/lvis_v1_val.json"),
            custom_hooks=[
                dict(type="H", path="data/lvis_v1/heldout.json", other="/elsewhere/data/lvis_v1/x")
            ],
        ),
        cfg_text="# toy\n",
        filename="toy.py",
    )


def test_retarget_config_moves_paths_classes_and_metainfo():
    cfg = retarget_config(_toy_config(), data_root="/mini", classes=["a", "b", "c"])
    assert cfg.data_root == "/mini/"
    assert cfg.model.loss_file.train_ann_file == "/mini/annotations/lvis_v1_train.json"
    assert cfg.val_evaluator.ann_file == "/mini/annotations/lvis_v1_val.json"
    assert cfg.custom_hooks[0]["path"] == "/mini/heldout.json"
    assert cfg.custom_hooks[0]["other"] == "/elsewhere/data/lvis_v1/x"  # not under the root: untouched
    roi = cfg.model.roi_head
    assert roi.bbox_head.num_classes == roi.bbox_head.loss_cls.num_classes == roi.mask_head.num_classes == 3
    assert cfg.model.rpn_head.num_classes == 1
    inner = cfg.train_dataloader.dataset.dataset
    assert inner.data_root == "/mini/" and inner.metainfo == dict(classes=("a", "b", "c"))
    assert "metainfo" not in cfg.val_evaluator  # a metric, not a dataset
    assert cfg.filename.endswith("toy.py")
    same_classes = retarget_config(_toy_config(), data_root="/mini")
    assert same_classes.model.roi_head.bbox_head.num_classes == 1203


def test_retarget_config_refuses_ambiguous_class_counts():
    cfg = _toy_config()
    cfg.model.roi_head.mask_head.num_classes = 80
    with pytest.raises(ValueError, match=r"\[80, 1203\]"):
        retarget_config(cfg, data_root="/mini", classes=["a"])
