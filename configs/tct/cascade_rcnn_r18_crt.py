# Decoupling, cRT (Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020),
# stage 2 of Cascade R-CNN R18: start from the stage-1 run of cascade_rcnn_r18_ce (instance-balanced sampling),
# re-initialise the three stages' box classifiers, freeze everything else (batch norm statistics included), and
# retrain the classifiers for 300 iterations on class-balanced image sampling (a class uniformly, then one of its
# images). Train stage 1 first: `cytolt train configs/tct/cascade_rcnn_r18_ce.py` (its work_dir is the load_from
# below), or point load_from elsewhere with --cfg-options load_from=PATH.
_base_ = "./cascade_rcnn_r18_ce.py"
load_from = "work_dirs/cascade_rcnn_r18_ce/iter_1000.pth"
train_dataloader = dict(sampler=dict(_delete_=True, type="ClassBalancedSampler"))
custom_hooks = [dict(type="ClassifierRetrainHook", trainable=["roi_head.bbox_head.*.fc_cls"])]
max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type="CosineAnnealingLR", T_max=max_iters, by_epoch=False, begin=0, end=max_iters, eta_min=1e-5)
]
# The hook freezes parameters after mmengine has wrapped the model; under DDP the frozen ones then get no gradient,
# which DDP accepts only with find_unused_parameters (untested here: no multi-GPU machine).
find_unused_parameters = True
