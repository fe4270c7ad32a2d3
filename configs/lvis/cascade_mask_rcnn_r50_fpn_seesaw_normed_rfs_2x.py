# Seesaw loss (Wang et al., CVPR 2021) in every box stage of Cascade Mask R-CNN R50-FPN 2x with RFS and normalised
# (cosine) classifiers, as mmdet's seesaw_loss/cascade-mask-rcnn_r101_fpn_seesaw-loss-normed-mask_sample1e-3-ms-2x
# _lvis-v1.py with an R50: p = 0.8, q = 2.0, C + 2 outputs per stage, NormedLinear box classifiers and a
# NormedConv2d mask predictor, temperature 20 (mmdet spells the keyword 'tempearture'). The loss is cytolt's Seesaw.
_base_ = "./cascade_mask_rcnn_r50_fpn_rfs_1x.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type="NormedLinear", tempearture=20),
            loss_cls=dict(
                _delete_=True,
                type="CytoltSeesawLoss",
                num_classes=1203,
                p=0.8,
                q=2.0,
                return_dict=True,
                loss_weight=1.0,
            ),
        ),
        mask_head=dict(predictor_cfg=dict(type="NormedConv2d", tempearture=20)),
    )
)
# 2x: 24 epochs, steps at 16 and 22 (mmdet's schedule_2x).
train_cfg = dict(max_epochs=24, val_interval=24)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
