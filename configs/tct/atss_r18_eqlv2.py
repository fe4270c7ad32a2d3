# ATSS R18 with EQLv2 (Tan et al., CVPR 2021): the one-line switch is loss_cls.
_base_ = "./atss_r18_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type="EQLv2Loss", num_classes=11, use_sigmoid=True, loss_weight=1.0)
    )
)
