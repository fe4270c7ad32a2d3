# atss R50 on GPU with Grad-Libra: the one-line switch is loss_cls.
_base_ = "./atss_r50_gpu_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type="GradLibraLoss", num_classes=11, use_sigmoid=True, loss_weight=1.0)
    )
)
