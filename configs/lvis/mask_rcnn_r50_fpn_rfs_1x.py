# Mask R-CNN R50-FPN 1x on LVIS v1 with repeat-factor sampling, t = 0.001 (Gupta et al., LVIS, CVPR 2019):
# mmdet's LVIS baseline (22.5 box / 21.7 mask AP). RFS is cytolt's RepeatFactorSampler (the sampler the TCT
# product trains with; stochastic rounding per epoch, as the LVIS paper) rather than mmdet's
# ClassBalancedDataset (which repeats each image ceil(r) times): see docs/lvis.md, "RFS".
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
train_dataloader = dict(sampler=dict(_delete_=True, type="RepeatFactorSampler", thr=0.001))
