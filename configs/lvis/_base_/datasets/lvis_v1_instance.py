# LVIS v1 instance segmentation, mmdet's LVISV1Dataset layout (scripts/lvis/prepare.sh checks it):
#   data/lvis_v1/annotations/lvis_v1_{train,val}.json, data/lvis_v1/train2017/, data/lvis_v1/val2017/
# Each image's file is taken from its coco_url (LVIS v1 val holds images of both COCO folders), hence
# data_prefix img=''. Sampling is uniform (DefaultSampler); the *_rfs_* configs switch to repeat-factor sampling.
# The pipelines are mmdet's lvis_v1_instance ones: multi-scale training (shorter side 640-800), 1333x800 test.
dataset_type = "LVISV1Dataset"
data_root = "data/lvis_v1/"
backend_args = None
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(
        type="RandomChoiceResize",
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
        keep_ratio=True,
    ),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
# Annotations load after Resize so that gt_instances stay in the original frame (CDBHook compares them with
# predictions there).
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations/lvis_v1_train.json",
        data_prefix=dict(img=""),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations/lvis_v1_val.json",
        data_prefix=dict(img=""),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader
# mmdet's LVISMetric runs lvis-api (300 detections per image, federated rules); scripts/lvis/evaluate.sh
# dumps its detections (outfile_prefix) and adds fixed AP through cytolt.evaluate.
val_evaluator = dict(
    type="LVISMetric",
    ann_file=data_root + "annotations/lvis_v1_val.json",
    metric=["bbox", "segm"],
    backend_args=backend_args,
)
test_evaluator = val_evaluator
