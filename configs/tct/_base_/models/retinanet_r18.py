# Narrow RetinaNet for CPU: ResNet-18 with base_channels=32, FPN 64 channels at strides 8/16/32, a 2-conv GroupNorm
# head, anchors 16-101 px. Trained from scratch (no downloads): val mAP 0.67 / mAP50 0.94 on 600 simple synthetic
# patches in ~2 min on 2 cores (ARCHITECTURE.md, measured). The classification loss is the line to switch.
_base_ = "./r18_narrow.py"
num_classes = 11
model = dict(
    type="RetinaNet",
    bbox_head=dict(
        type="RetinaHead",
        num_classes=num_classes,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=2,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]
        ),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
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
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)
