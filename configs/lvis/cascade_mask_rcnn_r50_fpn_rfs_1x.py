# Cascade Mask R-CNN R50-FPN 1x on LVIS v1 with repeat-factor sampling, t = 0.001 (cytolt's RepeatFactorSampler, as
# mask_rcnn_r50_fpn_rfs_1x.py).
_base_ = "./cascade_mask_rcnn_r50_fpn_random_1x.py"
train_dataloader = dict(sampler=dict(_delete_=True, type="RepeatFactorSampler", thr=0.001))
