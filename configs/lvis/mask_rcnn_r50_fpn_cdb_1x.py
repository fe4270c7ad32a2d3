# CDB-W + CDB-S (Sinha et al., ACCV 2020; IJCV 2022) on Mask R-CNN R50-FPN 1x. Every epoch CDBHook measures
# each class's difficulty d_c = 1 - recall@IoU0.5 on a held-out part of LVIS train and pushes it to the
# class-weighted softmax loss (CDB-W) and to the sampler (CDB-S, which replaces RFS); tau is the paper's
# dynamic tau. The held-out images are left out of training: scripts/lvis/prepare.sh --cdb-heldout N writes
# lvis_v1_train_cdb.json (train minus N images) and lvis_v1_cdb_heldout.json (the N images).
_base_ = "./mask_rcnn_r50_fpn_random_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type="CDBLoss",
                num_classes=1203,
                use_sigmoid=False,
                tau="dynamic",
                loss_weight=1.0,
            )
        )
    )
)
train_dataloader = dict(
    sampler=dict(_delete_=True, type="CDBSampler", tau="dynamic"),
    dataset=dict(ann_file="annotations/lvis_v1_train_cdb.json"),
)
custom_hooks = [
    dict(
        type="CDBHook",
        interval=1,
        dataloader=dict(
            batch_size=1,
            num_workers=2,
            persistent_workers=False,
            drop_last=False,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dict(
                type="LVISV1Dataset",
                data_root=data_root,
                ann_file="annotations/lvis_v1_cdb_heldout.json",
                data_prefix=dict(img=""),
                test_mode=True,
                pipeline={{_base_.test_pipeline}},
            ),
        ),
    )
]
