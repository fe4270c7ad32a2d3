# Cascade R-CNN R18 with Causal TDE (Tang et al., "Long-Tailed Classification by Keeping the Good and Removing the
# Bad Momentum Causal Effect", NeurIPS 2020) in every box stage (TDEShared2FCBBoxHead): a normalised 2-head
# classifier (tau 16, gamma 1/32) trained with softmax cross-entropy, a moving average of the foreground RoI
# features (momentum 0.9998), and at test the counterfactual subtraction (alpha 1.5) with background-exempted
# inference; alpha and momentum are the authors' LVIS code's. The causal argument needs SGD with momentum (the
# confounder is the momentum term), so this config trains with SGD (lr 0.02, momentum 0.9) instead of the TCT
# recipe's AdamW; gradient clipping and the schedule stay.
_base_ = "./cascade_rcnn_r18_ce.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="TDEShared2FCBBoxHead", tde=dict(num_heads=2, tau=16.0, alpha=1.5, momentum=0.9998)
        )
    )
)
optim_wrapper = dict(optimizer=dict(_delete_=True, type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4))
