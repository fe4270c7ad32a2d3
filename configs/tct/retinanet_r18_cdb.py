# RetinaNet R18 with CDB-W + CDB-S (Sinha et al., ACCV 2020): class difficulty = 1 - recall@0.5 on the val split,
# re-measured every 250 iterations by CDBHook and pushed to the loss weights and the image sampler.
_base_ = "./retinanet_r18_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type="CDBLoss",
            num_classes=11,
            use_sigmoid=True,
            tau="dynamic",
            gamma=2.0,
            loss_weight=1.0,
        )
    )
)
train_dataloader = dict(sampler=dict(_delete_=True, type="CDBSampler", tau="dynamic"))
custom_hooks = [dict(type="CDBHook", interval=250, by_epoch=False)]
