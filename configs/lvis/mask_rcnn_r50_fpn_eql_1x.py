# EQL (Tan et al., CVPR 2020) on Mask R-CNN R50-FPN 1x, uniform sampling, as the authors' released code
# (github.com/tztztztztz/eqlv2, configs/end2end/eql_r50_8x2_1x.py; 18.6 mask AP, APr 2.1): a sigmoid classifier
# (one logit per class, RoISigmoidLoss) whose rare-class negatives are dropped for foreground RoIs; lambda =
# 0.0011 on LVIS v1; f_j = images with category j / training images with at least one annotation (the authors'
# denominator), counted from the training annotations; classifier bias prior 0.001 (eql_bbox_head_init).
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
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
