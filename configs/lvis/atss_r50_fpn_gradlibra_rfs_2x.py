# Grad-Libra (Liu et al., MICCAI 2022; cytolt's documented reconstruction, see docs) on the ATSS R50 2x RFS
# baseline, the setting of EFL's one-stage LVIS results.
_base_ = "./atss_r50_fpn_focal_rfs_2x.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True, type="GradLibraLoss", num_classes=1203, use_sigmoid=True, loss_weight=1.0
        )
    )
)
