# fcos R50 on GPU (12 epochs, AMP) with sigmoid focal loss; switch loss_cls as in the R18 configs.
_base_ = [
    "_base_/models/fcos_r50.py",
    "_base_/datasets/tct_patches.py",
    "_base_/schedules/gpu_12e.py",
    "_base_/default_runtime.py",
]
train_dataloader = dict(batch_size=16, num_workers=8, persistent_workers=True)
default_hooks = dict(checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
