# Narrow Cascade R-CNN for CPU (Cai and Vasconcelos, CVPR 2018; mmdet's cascade-rcnn_r50_fpn): the shared narrow
# ResNet-18 + 64-channel FPN at strides 8/16/32, an RPN with anchors of 16-128 px (scales 2 and 4 per stride: the
# cells are 16-101 px), and three box stages trained at IoU 0.5 / 0.6 / 0.7 with tighter regression targets at
# each stage and loss weights 1 / 0.5 / 0.25. Heads are 256-wide (mmdet: 1024) and sample 256 RoIs per image
# (mmdet: 512) so that a step stays ~5 s on 2 cores. The classification loss is the line the variants switch.
_base_ = "./r18_narrow.py"
num_classes = 11
model = dict(
    type="CascadeRCNN",
    rpn_head=dict(
        type="RPNHead",
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(
            type="AnchorGenerator", scales=[2, 4], ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]
        ),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
    ),
    roi_head=dict(
        type="SharedConfigCascadeRoIHead",
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[8, 16, 32],
        ),
        # Every stage builds this head (its own modules and loss state) with its own target stds, mmdet's cascade
        # values (0.1, 0.05, 0.033 for centres, twice that for sizes). The variants switch loss_cls.
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=64,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4),
            reg_class_agnostic=True,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
        stage_target_stds=[[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]],
    ),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1,
            ),
            sampler=dict(
                type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False
            ),
            allowed_border=0,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_pre=1000, max_per_img=500, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=[
            dict(
                assigner=dict(
                    type="MaxIoUAssigner",
                    pos_iou_thr=iou,
                    neg_iou_thr=iou,
                    min_pos_iou=iou,
                    match_low_quality=False,
                    ignore_iof_thr=-1,
                ),
                sampler=dict(
                    type="RandomSampler", num=256, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
                ),
                pos_weight=-1,
                debug=False,
            )
            for iou in (0.5, 0.6, 0.7)
        ],
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
    ),
)
