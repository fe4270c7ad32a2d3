# GPU schedule for ResNet-50 models: 12 epochs, SGD 0.01 at batch 16 (mmdet's 1x), step at 8 and 11.
# Mixed precision: `cytolt train` switches to AmpOptimWrapper when CUDA is available (--no-amp to turn it off).
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=3)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=True, base_batch_size=16)
