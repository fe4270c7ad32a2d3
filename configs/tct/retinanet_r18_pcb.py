# RetinaNet R18 with PCB (He et al., CVPR 2022) on the softmax head of retinanet_r18_ce (C + 1 outputs per anchor):
# cross-entropy plus the fight-back KL regulariser on foreground anchors, alpha 0.4, confusion matrix momentum
# 0.99, switched on at 70% of max_iters (the authors: epoch 17 of 24). The paper uses a two-stage head
# (cascade_rcnn_r18_pcb.py); this one-stage form is the benchmark's row. Background anchors keep plain CE.
_base_ = "./retinanet_r18_ce.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True, type="PCBLoss", use_sigmoid=False, num_classes=11, alpha=0.4, momentum=0.99
        )
    )
)
custom_hooks = [dict(type="PCBHook", start_fraction=0.7)]
