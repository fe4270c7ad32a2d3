# EQL (Tan et al., CVPR 2020) in every box stage of Cascade Mask R-CNN R50-FPN 1x, uniform sampling: a sigmoid
# classifier per stage (RoISigmoidLoss, one logit per class) whose rare-class negatives are dropped for foreground
# RoIs; lambda = 0.0011 on LVIS v1; f_j counted from the training annotations.
_base_ = "./cascade_mask_rcnn_r50_fpn_random_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type="RoISigmoidLoss",
                loss=dict(type="EQLLoss", lambda_=0.0011, loss_weight=1.0),
                train_ann_file=data_root + "annotations/lvis_v1_train.json",
            ),
            init_cfg={{_base_.eql_bbox_head_init}},
        )
    )
)
