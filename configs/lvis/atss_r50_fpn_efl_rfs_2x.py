# Equalized Focal Loss (Li et al., CVPR 2022) on the ATSS R50 2x RFS baseline: gamma_j = 2 + 8 (1 - r_j) from
# the accumulated positive/negative gradient ratio, weight gamma_j / 2, alpha 0.25 (cytolt's defaults).
_base_ = "./atss_r50_fpn_focal_rfs_2x.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True, type="EqualizedFocalLoss", num_classes=1203, use_sigmoid=True, loss_weight=1.0
        )
    )
)
