# RetinaNet R18 with Grad-Libra (Liu et al., MICCAI 2022; cytolt's documented reconstruction): the one-line switch is loss_cls.
_base_ = "./retinanet_r18_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type="GradLibraLoss", num_classes=11, use_sigmoid=True, loss_weight=1.0)
    )
)
