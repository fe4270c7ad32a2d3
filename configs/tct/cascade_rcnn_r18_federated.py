# Cascade R-CNN R18 with the federated loss (Zhou et al., 2021) in every box stage: sigmoid BCE over the batch's
# positive classes plus classes drawn with weight image_count^0.5 (counted from the training annotations) up to 6
# of the 11 (LVIS: 50 of 1203). The TCT labels are exhaustive, so this row tests the loss, not federated labels.
_base_ = "./cascade_rcnn_r18_ce.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type="RoISigmoidLoss",
                loss=dict(type="FederatedLoss", num_sample_classes=6),
                train_ann_file="data/tct/annotations_train.json",
            )
        )
    )
)
