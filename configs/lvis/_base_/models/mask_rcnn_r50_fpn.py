# Mask R-CNN R50-FPN for LVIS v1 (1203 classes), the model of mmdet 3.3's
# lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py (tests/lvis checks that they agree).
#
# Backbone weights: the published numbers start from torchvision's ImageNet ResNet-50, the file mmdet's
# 'torchvision://resnet50' fetches. The backbone keeps init_cfg=None so that the config builds offline, and a
# full-data run refuses to start until init_cfg points at that file, verified (cytolt.mm.lvis_weights):
# PRETRAINED=checkpoints/resnet50-0676ba61.pth scripts/lvis/train.sh METHOD GPUS. The file and its digest are in
# resnet50_imagenet.py.
_base_ = "./resnet50_imagenet.py"
num_classes = 1203
# Sigmoid classifiers in the RoI head start at p = 0.01 per class (detectron2's prior for sigmoid CE, the one
# CenterNet2 / Detic use with the federated loss) instead of the softmax head's zero bias; the rest is BBoxHead's
# default init. eql_bbox_head_init is the same with p = 0.001, the prior of the EQL / EQLv2 authors' code
# (ConvFCBBoxHead.init_weights: bias_init_with_prob(0.001), std 0.01, for every sigmoid RoI head).
_fc_init = [
    dict(type="Normal", std=0.001, override=dict(name="fc_reg")),
    dict(
        type="Xavier",
        distribution="uniform",
        override=[dict(name="shared_fcs"), dict(name="cls_fcs"), dict(name="reg_fcs")],
    ),
]
sigmoid_bbox_head_init = [
    dict(type="Normal", std=0.01, bias_prob=0.01, override=dict(name="fc_cls")),
    *_fc_init,
]
eql_bbox_head_init = [dict(type="Normal", std=0.01, bias_prob=0.001, override=dict(name="fc_cls")), *_fc_init]
model = dict(
    type="MaskRCNN",
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=True,
        style="pytorch",
        init_cfg=None,
    ),
    neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    rpn_head=dict(
        type="RPNHead",
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]
        ),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    roi_head=dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=num_classes,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
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
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=True,
                ignore_iof_thr=-1,
            ),
            sampler=dict(
                type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
            ),
            mask_size=28,
            pos_weight=-1,
            debug=False,
        ),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        # LVIS: keep low scores (rare classes score low) and up to 300 detections per image (the LVIS limit).
        rcnn=dict(
            score_thr=0.0001, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300, mask_thr_binary=0.5
        ),
    ),
)
