# Cascade Mask R-CNN R50-FPN 1x on LVIS v1 with uniform image sampling and softmax cross-entropy in every box stage:
# the cascade's plain baseline. The variants put a long-tail RoI loss in every stage: _eql_1x, _eqlv2_1x (uniform
# sampling, as their papers), _federated_rfs_1x, _seesaw_normed_rfs_2x.
_base_ = [
    "./_base_/models/cascade_mask_rcnn_r50_fpn.py",
    "./_base_/datasets/lvis_v1_instance.py",
    "./_base_/schedules/schedule_1x.py",
    "./_base_/default_runtime.py",
]
