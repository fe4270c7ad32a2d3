# Federated loss (Zhou et al., 2021) in every box stage of Cascade Mask R-CNN R50-FPN 1x with RFS: sigmoid BCE over
# the batch's positive classes plus classes drawn with weight image_count^0.5 up to 50 (CenterNet2's LVIS setting,
# which is a cascade too); image_count counted from the training annotations.
_base_ = "./cascade_mask_rcnn_r50_fpn_rfs_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type="RoISigmoidLoss",
                loss=dict(type="FederatedLoss", num_sample_classes=50, power=0.5, loss_weight=1.0),
                train_ann_file=data_root + "annotations/lvis_v1_train.json",
            ),
            init_cfg={{_base_.sigmoid_bbox_head_init}},
        )
    )
)
