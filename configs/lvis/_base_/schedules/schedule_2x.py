# mmdet's 2x: 24 epochs, steps at epochs 16 and 22; otherwise as schedule_1x.
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=24, val_interval=24)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
optim_wrapper = dict(
    type="OptimWrapper", optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=0.0001)
)
# The published numbers used 8 GPUs x 2 images = 16 (lr 0.02). enable=False is mmdet's own value: the
# learning rate never changes silently with the GPU count. scripts/lvis/train.sh refuses a full-data run
# at another total batch unless told LR=scale (linear rule, base 16, enable=True) or LR=keep (lr unchanged),
# and prints the total batch and lr it trains with.
auto_scale_lr = dict(enable=False, base_batch_size=16)
