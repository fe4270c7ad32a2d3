# Causal TDE (Tang et al., "Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal
# Effect", NeurIPS 2020) on Mask R-CNN R50-FPN 1x, uniform sampling (TDE is meant to replace re-sampling): the box
# classifier is the normalised 2-head classifier (tau 16, gamma 1/32) with a moving-average RoI feature (momentum
# 0.9, the SGD momentum of mmdet's schedule, which the causal argument assumes); at test the counterfactual
# subtraction (alpha 3) with background-exempted inference. The paper reports LVIS v0.5 only; no LVIS v1 number
# for this setting was found (see docs/losses/index.md).
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type="TDEPredictor", num_heads=2, tau=16.0, alpha=3.0, momentum=0.9)
        )
    )
)
