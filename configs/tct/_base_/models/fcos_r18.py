# Narrow FCOS for CPU (backbone and neck: r18_narrow.py). FCOS was worse than RetinaNet on tiny clustered
# cells in the measured runs (ARCHITECTURE.md); kept for the Grad-Libra paper's detector set.
_base_ = "./r18_narrow.py"
num_classes = 11
model = dict(
    type="FCOS",
    bbox_head=dict(
        type="FCOSHead",
        num_classes=num_classes,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[8, 16, 32],
        regress_ranges=((-1, 64), (64, 128), (128, 1e8)),
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="IoULoss", loss_weight=1.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)
