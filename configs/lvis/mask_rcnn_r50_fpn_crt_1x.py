# Decoupling, cRT (Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020)
# on Mask R-CNN R50-FPN: stage 2 from the uniform-sampling 1x run (`scripts/lvis/train.sh random`, whose last
# checkpoint is the load_from below): the box classifier (1203 classes + background) re-initialised, everything
# else frozen (batch norm statistics included), retrained 1x (12 epochs, mmdet's schedule) on class-balanced image
# sampling. Kang et al. report classification only; no published LVIS detection number for this exact recipe was
# found (see docs/losses/index.md).
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
load_from = "work_dirs/lvis/random/epoch_12.pth"
train_dataloader = dict(sampler=dict(_delete_=True, type="ClassBalancedSampler"))
custom_hooks = [dict(type="ClassifierRetrainHook", trainable=["roi_head.bbox_head.fc_cls"])]
# The hook freezes parameters after mmengine has wrapped the model; under DDP the frozen ones then get no gradient,
# which DDP accepts only with find_unused_parameters (untested here: no multi-GPU machine).
find_unused_parameters = True
