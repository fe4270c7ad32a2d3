# EQLv2 (Tan et al., CVPR 2021) on Mask R-CNN R50-FPN 1x, uniform sampling, as the authors' released mmdet code
# (github.com/tztztztztz/eqlv2, configs/end2end/eqlv2_r50_8x2_1x.py; 23.7 mask AP, APr 14.9, 24.2 box AP):
# C + 1 sigmoid outputs, the last a background ("objectness") output trained with weight 1 and left out of the
# gradient statistics; class scores times 1 - sigmoid(z_bg) at test time; gamma 12, mu 0.8, alpha 4; classifier
# bias prior 0.001 (eql_bbox_head_init). mask_rcnn_r50_fpn_eqlv2_c_1x.py is the C-output variant without it.
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type="RoISigmoidLoss",
                loss=dict(type="EQLv2Loss", num_classes=1203, objectness=True),
            ),
            init_cfg={{_base_.eql_bbox_head_init}},
        )
    )
)
