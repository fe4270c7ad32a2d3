# PCB (He et al., "Relieving Long-tailed Instance Segmentation via Pairwise Class Balance", CVPR 2022) on Mask R-CNN
# R50-FPN 2x with RFS (t = 0.001): softmax cross-entropy plus the fight-back KL regulariser (alpha 0.4, confusion
# matrix momentum 0.99) from epoch 17 (0-based) of 24, the authors' mask_rcnn_r50_fpn_sample1e-3_mstrain_pcb_2x_lvis_v1
# recipe (github.com/megvii-research/PCB). Published (their README, LVIS v1 val): 26.5 mask AP, APr 18.5, 28.3 box
# AP. Their RoI head is the paper's iterative head (3 classifier iterations, alpha ramped 0 / 0.2 / 0.4); cytolt's
# is mmdet's Shared2FCBBoxHead with the full alpha, so expect to land below that. See docs/losses/index.md.
_base_ = "./mask_rcnn_r50_fpn_rfs_1x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type="PCBLoss", num_classes=1203, alpha=0.4, momentum=0.99)
        )
    )
)
custom_hooks = [dict(type="PCBHook", start_epoch=17)]
# 2x: 24 epochs, steps at 16 and 22 (mmdet's schedule_2x).
train_cfg = dict(max_epochs=24, val_interval=24)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
