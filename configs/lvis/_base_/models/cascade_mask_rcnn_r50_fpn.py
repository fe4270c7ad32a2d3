# Cascade Mask R-CNN R50-FPN for LVIS v1 (Cai and Vasconcelos, CVPR 2018): the model of mmdet 3.3's
# cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py with 1203 classes and the LVIS test limits (tests/lvis checks
# that they agree). Mask R-CNN's backbone, FPN, RPN (smooth L1 here), extractors and mask branch, and three box
# stages trained at IoU 0.5 / 0.6 / 0.7 with loss weights 1 / 0.5 / 0.25. SharedConfigCascadeRoIHead builds the
# three box heads from one config, each with its own target stds, so the variants switch loss_cls in one place.
_base_ = "./mask_rcnn_r50_fpn.py"
model = dict(
    type="CascadeRCNN",
    rpn_head=dict(loss_bbox=dict(_delete_=True, type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type="SharedConfigCascadeRoIHead",
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        # Mask R-CNN's box head with class-agnostic regression and smooth L1, as every stage of mmdet's cascade.
        bbox_head=dict(
            reg_class_agnostic=True,
            loss_bbox=dict(_delete_=True, type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
        # mmdet's cascade target stds (0.1, 0.05, 0.033 for centres, twice that for sizes).
        stage_target_stds=[[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]],
    ),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
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
                    type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
                ),
                mask_size=28,
                pos_weight=-1,
                debug=False,
            )
            for iou in (0.5, 0.6, 0.7)
        ],
    ),
)
