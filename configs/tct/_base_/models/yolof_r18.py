# Narrow YOLOF for CPU: single C5 level (stride 32) with a dilated encoder, as in the YOLOF paper but narrow.
_base_ = "./r18_narrow.py"
num_classes = 11
model = dict(
    type="YOLOF",
    backbone=dict(out_indices=(3,)),
    neck=dict(
        _delete_=True,
        type="DilatedEncoder",
        in_channels=256,
        out_channels=128,
        block_mid_channels=32,
        num_residual_blocks=2,
        block_dilations=[2, 4],
    ),
    bbox_head=dict(
        type="YOLOFHead",
        num_classes=num_classes,
        in_channels=128,
        reg_decoded_bbox=True,
        anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], scales=[1, 2, 4, 8, 16], strides=[32]),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder",
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0],
            add_ctr_clamp=True,
            ctr_clamp=32,
        ),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
    ),
    train_cfg=dict(
        assigner=dict(type="UniformAssigner", pos_ignore_thr=0.15, neg_ignore_thr=0.7),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.6),
        max_per_img=100,
    ),
)
