# yolof with ResNet-50 and full-width FPN/head, for GPU runs. No weights are downloaded: to start from ImageNet
# weights set model.backbone.init_cfg=dict(type="Pretrained", checkpoint="/local/path/resnet50.pth").
_base_ = "./yolof_r18.py"
model = dict(
    backbone=dict(depth=50, base_channels=64),
    neck=dict(
        in_channels=2048,
        out_channels=512,
        block_mid_channels=128,
        num_residual_blocks=4,
        block_dilations=[2, 4, 6, 8],
    ),
    bbox_head=dict(in_channels=512),
)
