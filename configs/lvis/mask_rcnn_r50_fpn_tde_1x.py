# Causal TDE (Tang et al., "Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal
# Effect", NeurIPS 2020) on Mask R-CNN R50-FPN 1x, uniform sampling (TDE is meant to replace re-sampling):
# TDEShared2FCBBoxHead, a normalised 2-head box classifier (tau 16, gamma 1/32) with a moving average of the
# foreground RoI features (momentum 0.9998) under mmdet's SGD with momentum 0.9, which the causal argument assumes;
# at test the counterfactual subtraction (alpha 1.5) with background-exempted inference. alpha and momentum are the
# authors' LVIS v1 code's (github.com/KaihuaTang/Long-Tailed-Recognition.pytorch, lvis1.0/, an HTC R101 model);
# no number for Mask R-CNN R50 was found (see docs/losses/index.md).
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="TDEShared2FCBBoxHead", tde=dict(num_heads=2, tau=16.0, alpha=1.5, momentum=0.9998)
        )
    )
)
