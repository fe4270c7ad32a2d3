# Mask R-CNN R50-FPN 1x on LVIS v1 with uniform image sampling and softmax cross-entropy: the plain baseline
# (EQLv2 paper, Tan et al. CVPR 2021: 16.1 mask AP, APr 0.0; see docs/lvis.md).
_base_ = [
    "./_base_/models/mask_rcnn_r50_fpn.py",
    "./_base_/datasets/lvis_v1_instance.py",
    "./_base_/schedules/schedule_1x.py",
    "./_base_/default_runtime.py",
]
