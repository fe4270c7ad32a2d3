# IIF (Alexandridis et al., "Inverse Image Frequency for Long-tailed Image Recognition", IEEE TIP 2023) on Mask
# R-CNN R50-FPN 2x with RFS (t = 0.001): the softmax box classifier's class logits times iif_c = log(N / n_c)
# (the 'raw' variant; N training images, n_c of them with class c, counted from the training annotations), at
# training and at test, background factor 1. This is the authors' iif_r50_rfs_4x4_2x recipe (github.com/
# kostas1515/iif). Published: 26.2 mask AP with Mask R-CNN R50 (arXiv 2209.04861 abstract; 26.3 in the TIP
# version, whose released model adds FASA augmentation, a cosine classifier, GIoU and the instance-count 'base10'
# variant); no separate number for this exact recipe was found. See docs/losses/index.md.
_base_ = "./mask_rcnn_r50_fpn_rfs_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type="IIFPredictor",
                train_ann_file=data_root + "annotations/lvis_v1_train.json",
                variant="raw",
                counts="images",
            )
        )
    )
)
# 2x: 24 epochs, steps at 16 and 22 (mmdet's schedule_2x).
train_cfg = dict(max_epochs=24, val_interval=24)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
