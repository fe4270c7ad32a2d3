# Cascade R-CNN R18 with EQLv2 (Tan et al., CVPR 2021) in every box stage: one sigmoid per class (RoISigmoidLoss,
# no background column), each stage with its own gradient statistics.
_base_ = "./cascade_rcnn_r18_ce.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type="RoISigmoidLoss", loss=dict(type="EQLv2Loss", num_classes=11))
        )
    )
)
