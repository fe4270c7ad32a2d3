# ATSS R50-FPN 2x on LVIS v1 with RFS and focal loss: the one-stage baseline for EFL and Grad-Libra (EFL's
# paper, Li et al. CVPR 2022, trains one-stage R50 models 24 epochs with RFS). SGD 0.01 at batch 16 (mmdet's
# ATSS setting).
_base_ = [
    "./_base_/models/atss_r50_fpn.py",
    "./_base_/datasets/lvis_v1_detection.py",
    "./_base_/schedules/schedule_2x.py",
    "./_base_/default_runtime.py",
]
train_dataloader = dict(sampler=dict(_delete_=True, type="RepeatFactorSampler", thr=0.001))
optim_wrapper = dict(optimizer=dict(lr=0.01))
