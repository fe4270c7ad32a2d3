# ATSS R18 with CDB-W + CDB-S (Sinha et al., ACCV 2020): class difficulty = 1 - recall@0.5 on a held-out
# part of train, re-measured by CDBHook and pushed to the loss weights and the sampler; focal alpha as in the baseline.
_base_ = "./atss_r18_focal.py"
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type="CDBLoss",
            num_classes=11,
            use_sigmoid=True,
            tau="dynamic",
            gamma=2.0,
            alpha=0.25,  # as the focal baseline: CDB-W is the only change
            loss_weight=1.0,
        )
    )
)
train_dataloader = dict(sampler=dict(_delete_=True, type="CDBSampler", tau="dynamic"))
# Difficulty on 15% of the training images (stratified by rarest class), which CDBSampler then never draws;
# re-measured every 100 iterations (about one epoch of the 85% left at batch 4, K=1 as in the paper): 4 updates in 500.
custom_hooks = [dict(type="CDBHook", interval=100, by_epoch=False, held_out_fraction=0.15)]
