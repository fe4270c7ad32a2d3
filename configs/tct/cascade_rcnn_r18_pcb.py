# Cascade R-CNN R18 with PCB (He et al., "Relieving Long-tailed Instance Segmentation via Pairwise Class Balance",
# CVPR 2022) in every box stage: softmax cross-entropy (C + 1 outputs) plus the fight-back KL regulariser, alpha 0.4,
# from a per-stage confusion matrix (momentum 0.99). The authors switch the regulariser on at epoch 17 of 24
# (71% of the schedule); here PCBHook does it at 70% of max_iters, so a shortened schedule keeps the proportion.
_base_ = "./cascade_rcnn_r18_ce.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(loss_cls=dict(_delete_=True, type="PCBLoss", num_classes=11, alpha=0.4, momentum=0.99))
    )
)
custom_hooks = [dict(type="PCBHook", start_fraction=0.7)]
