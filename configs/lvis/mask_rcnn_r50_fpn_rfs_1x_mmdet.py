# mmdet's own recipe for its LVIS v1 Mask R-CNN R50-FPN 1x number (22.5 box / 21.7 mask AP, mmdet 3.3
# lvis/metafile.yml; 8 GPUs x 2 images, lr 0.02): lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py with
# repeat-factor sampling by mmdet's ClassBalancedDataset (oversample_thr 1e-3), which repeats each image
# ceil(r) times in every epoch. tests/lvis/test_recipes.py resolves both configs and checks that they differ
# only in the keys listed there (cytolt's imports, checkpoint retention, evaluation interval, the backbone
# weights, which train.sh sets from a verified local file). mask_rcnn_r50_fpn_rfs_1x.py is cytolt's
# stochastic-rounding sampler on the same model: its own row, not mmdet's number.
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="ClassBalancedDataset",
        oversample_thr=1e-3,
        dataset={{_base_.train_dataloader.dataset}},
    )
)
