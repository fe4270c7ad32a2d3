# Simple Copy-Paste (Ghiasi et al., CVPR 2021) on Mask R-CNN R50-FPN 1x with RFS: mmdet's CopyPaste (the
# paper's rule: paste up to 100 objects of another image, drop occluded targets whose box moved more than
# 10 px and that keep fewer than 300 pixels) after the paper's large-scale jittering (resize 0.1-2.0 of
# 1024x1024, crop, pad). This is not mmdet's copy-paste recipe: mmdet 3.3's simple_copy_paste configs
# (common/ssj_scp_270k_coco-instance.py) use standard-scale jittering, 0.8-1.25, SyncBN, from scratch, on COCO
# for 90k / 270k iterations. No published LVIS number belongs to this config; it is the 1x comparison with rfs.
# ClassAwareMixDataset is mmdet's MultiImageMixDataset that lets RepeatFactorSampler read image classes.
_base_ = "./mask_rcnn_r50_fpn_rfs_1x.py"
data_root = "data/lvis_v1/"
image_size = (1024, 1024)
load_pipeline = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomResize", scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type="RandomCrop",
        crop_type="absolute_range",
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True,
    ),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="Pad", size=image_size),
]
train_pipeline = [dict(type="CopyPaste", max_num_pasted=100), dict(type="PackDetInputs")]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="ClassAwareMixDataset",
        dataset=dict(
            type="LVISV1Dataset",
            data_root=data_root,
            ann_file="annotations/lvis_v1_train.json",
            data_prefix=dict(img=""),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=load_pipeline,
            backend_args=None,
        ),
        pipeline=train_pipeline,
    )
)
