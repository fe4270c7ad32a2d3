# mmdet's own recipe for its Seesaw normed-mask RFS 2x number (27.6 box / 26.8 mask AP, mmdet 3.3
# seesaw_loss/metafile.yml; 8 GPUs x 2 images): seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss-normed-mask_
# sample1e-3-ms-2x_lvis-v1.py. The cytolt seesaw row's model and 2x schedule (NormedLinear / NormedConv2d,
# temperature 20) with mmdet's own SeesawLoss (p 0.8, q 2.0) and mmdet's ClassBalancedDataset (ceil(r) repeats
# per image) under the DefaultSampler. Checked key by key against the resolved mmdet config in
# tests/lvis/test_recipes.py. mask_rcnn_r50_fpn_seesaw_normed_rfs_2x.py (cytolt's Seesaw and sampler) is its own row.
_base_ = "./mask_rcnn_r50_fpn_seesaw_normed_rfs_2x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            # use_sigmoid=False: what mmdet's config inherits from the CrossEntropyLoss it overrides.
            loss_cls=dict(
                _delete_=True,
                type="SeesawLoss",
                use_sigmoid=False,
                p=0.8,
                q=2.0,
                num_classes=1203,
                loss_weight=1.0,
            ),
        ),
    )
)
train_dataloader = dict(
    sampler=dict(_delete_=True, type="DefaultSampler", shuffle=True),
    dataset=dict(
        _delete_=True,
        type="ClassBalancedDataset",
        oversample_thr=1e-3,
        dataset={{_base_.train_dataloader.dataset}},
    ),
)
