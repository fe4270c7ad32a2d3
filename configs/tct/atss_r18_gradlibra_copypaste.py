# ATSS R18 with Grad-Libra and rare-biased cell copy-paste (Ghiasi et al., CVPR 2021 + cytolt's placement).
_base_ = "./atss_r18_gradlibra.py"
data_root = "data/tct/"
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomFlip", prob=0.5, direction=["horizontal", "vertical"]),
    dict(
        type="CellCopyPaste",
        bank=dict(ann_file=data_root + "annotations_train.json", img_dir=data_root),
        class_weights="inverse",
        max_pasted=4,
    ),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
