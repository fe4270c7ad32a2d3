# EQLv2 (Tan et al., CVPR 2021) in every box stage of Cascade Mask R-CNN R50-FPN 1x, uniform sampling: a sigmoid
# classifier per stage re-weighted by its own accumulated positive/negative gradients (gamma 12, mu 0.8, alpha 4),
# with the authors' objectness output and bias prior 0.001, as mask_rcnn_r50_fpn_eqlv2_1x.py.
_base_ = "./cascade_mask_rcnn_r50_fpn_random_1x.py"
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
