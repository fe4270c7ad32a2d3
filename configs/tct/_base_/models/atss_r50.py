# atss with ResNet-50 and full-width FPN/head, for GPU runs. No weights are downloaded: to start from ImageNet
# weights set model.backbone.init_cfg=dict(type="Pretrained", checkpoint="/local/path/resnet50.pth").
_base_ = "./atss_r18.py"
model = dict(
    backbone=dict(depth=50, base_channels=64),
    neck=dict(in_channels=[512, 1024, 2048], out_channels=256),
    bbox_head=dict(
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        norm_cfg=dict(type="GN", num_groups=32, requires_grad=True),
    ),
)
