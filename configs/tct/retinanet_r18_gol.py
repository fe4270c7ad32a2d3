# RetinaNet R18 with GOL (Alexandridis et al., ECCV 2022): Gumbel activation p = exp(-exp(-z)) in training (BCE,
# logits clamped to [-4, 10] as the authors do) and at test time (GumbelRetinaHead scores with it, not with the
# sigmoid); the classifier bias starts at the Gumbel prior -log(-log(0.01)) = -1.527. Compare with the ce row
# (no focal term either).
_base_ = "./retinanet_r18_focal.py"
model = dict(
    bbox_head=dict(
        type="GumbelRetinaHead",
        prior_prob=0.01,
        loss_cls=dict(_delete_=True, type="GumbelLoss", use_sigmoid=True, loss_weight=1.0),
    )
)
