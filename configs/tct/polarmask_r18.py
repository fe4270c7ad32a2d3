# PolarMask R18 (narrow, CPU) on synthetic TCT patches: single-shot instance masks from 36 rays (Xie et al.,
# CVPR 2020; cytolt.mm.polarmask). FCOS's head structure on the shared narrow R18 + 64-channel FPN; positives
# within 1.5 strides of each cell's mass centre; focal classification, Polar IoU ray loss, polar centerness.
# The cells' masks load with the annotations (_base_/datasets/tct_patches_masks.py); test-time masks are the
# polygons through the rays' ends, scored by mmdet's CocoMetric (segm) beside the long-tail box metric.
_base_ = [
    "_base_/models/r18_narrow.py",
    "_base_/datasets/tct_patches_masks.py",
    "_base_/schedules/cpu_1k.py",
    "_base_/default_runtime.py",
]
num_classes = 11
model = dict(
    type="PolarMask",
    bbox_head=dict(
        type="PolarMaskHead",
        num_classes=num_classes,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[8, 16, 32],
        # the largest box-side distance of a positive: cells are 16-110 px, so most land at stride 8
        regress_ranges=((-1, 64), (64, 128), (128, 1e8)),
        num_rays=36,
        center_sample_radius=1.5,
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_mask=dict(type="PolarIoULoss", loss_weight=1.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)
