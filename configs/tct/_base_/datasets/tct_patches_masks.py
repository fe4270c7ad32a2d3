# The synthetic TCT patches of tct_patches.py with the cells' instance masks (the RLE `cytolt synth patches` writes),
# for the instance-segmentation configs (polarmask_r18, mask_rcnn_r18): masks load for training (RandomFlip flips
# them with the image) and predictions are scored as COCO mask AP (mmdet's CocoMetric, segm) beside the long-tail
# box AP of every TCT config.
_base_ = "./tct_patches.py"
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomFlip", prob=0.5, direction=["horizontal", "vertical"]),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_evaluator = [
    dict(type="LongTailMetric", ann_file="data/tct/annotations_val.json"),
    dict(type="CocoMetric", ann_file="data/tct/annotations_val.json", metric=["segm"], format_only=False),
]
test_evaluator = [
    dict(type="LongTailMetric", ann_file="data/tct/annotations_test.json"),
    dict(type="CocoMetric", ann_file="data/tct/annotations_test.json", metric=["segm"], format_only=False),
]
