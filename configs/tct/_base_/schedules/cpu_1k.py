# 1,000 iterations of batch 4: ~2 minutes for the narrow R18 RetinaNet on 2 CPU cores (ARCHITECTURE.md, measured).
# AdamW beat SGD 0.01 at equal iterations on the synthetic set; rare classes need ~250+ iterations.
max_iters = 1000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", T_max=max_iters, by_epoch=False, begin=0, end=max_iters, eta_min=1e-5),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
