# RepPoints R18 with Equalized Focal Loss (Li et al., CVPR 2022): the one-line switch is loss_cls.
_base_ = "./reppoints_r18_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True, type="EqualizedFocalLoss", num_classes=11, use_sigmoid=True, loss_weight=1.0
        )
    )
)
