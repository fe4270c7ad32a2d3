# Synthetic TCT patches from `cytolt synth patches DATA_ROOT --split 0.7,0.15,0.15` (COCO + LVIS fields).
# Point elsewhere with `cytolt train CONFIG --data-root /path` (sets every data_root and ann_file below).
custom_imports = dict(imports=["cytolt.mm"], allow_failed_imports=False)
dataset_type = "CocoDataset"
data_root = "data/tct/"
# The order is cytolt.synth.CLASSES, head to tail (tests/configs checks that they agree).
classes = (
    "intermediate",
    "superficial",
    "neutrophil_cluster",
    "parabasal",
    "candida",
    "trichomonas",
    "ascus",
    "lsil",
    "hsil",
    "scc",
    "agc",
)
metainfo = dict(
    classes=classes,
    palette=[
        (80, 160, 230),
        (150, 110, 230),
        (120, 120, 120),
        (40, 190, 190),
        (140, 60, 160),
        (60, 170, 60),
        (250, 200, 0),
        (255, 140, 0),
        (230, 40, 40),
        (150, 0, 0),
        (230, 0, 160),
    ],
)
backend_args = None

train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5, direction=["horizontal", "vertical"]),
    dict(type="PackDetInputs"),
]
# Resize by 1.0 records scale_factor (mmdet rescales predictions by it); annotations load after it, as CDBHook needs.
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale_factor=1.0, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
# num_workers=0: on 2 cores, loader processes fight torch's threads (measured ~20x slow-down when oversubscribed).
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    # Seeded shuffle; endless under an iteration loop (SamplerSeedHook), so no 2-s loader restart each pass.
    sampler=dict(type="ShuffleSampler"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file="annotations_train.json",
        data_prefix=dict(img=""),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file="annotations_val.json",
        data_prefix=dict(img=""),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
# The test split is read like the validation split.
test_dataloader = dict(
    val_dataloader, dataset=dict(val_dataloader["dataset"], ann_file="annotations_test.json")
)
# LVIS-style AP with rare/common/frequent groups and per-class AP (cytolt.mm.metrics.LongTailMetric).
val_evaluator = dict(type="LongTailMetric", ann_file=data_root + "annotations_val.json")
test_evaluator = dict(type="LongTailMetric", ann_file=data_root + "annotations_test.json")
