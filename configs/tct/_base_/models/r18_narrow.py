# The narrow ResNet-18 every CPU detector here shares: base_channels=32 (a quarter of the usual widths), C3-C5 into
# a 64-channel FPN at strides 8/16/32, trained from scratch (no downloads). Detector bases add their head; YOLOF
# swaps the neck for its dilated encoder on C5.
model = dict(
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type="ResNet",
        depth=18,
        base_channels=32,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
        init_cfg=None,
    ),
    neck=dict(type="FPN", in_channels=[64, 128, 256], out_channels=64, start_level=0, num_outs=3),
)
