# Cascade R-CNN R18 (narrow, CPU) on synthetic TCT patches with softmax cross-entropy in every box stage (the
# two-stage baseline). The variants switch each stage's loss_cls to a long-tail RoI loss: _eql, _eqlv2, _seesaw,
# _federated.
_base_ = [
    "_base_/models/cascade_rcnn_r18.py",
    "_base_/datasets/tct_patches.py",
    "_base_/schedules/cpu_1k.py",
    "_base_/default_runtime.py",
]
