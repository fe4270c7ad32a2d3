# NorCal (Pan et al., NeurIPS 2021) at test time on the RFS baseline: foreground scores divided by
# N_c ** gamma (N_c = training instances of class c, counted from the training annotations), background kept,
# renormalised. Training is the RFS baseline's; evaluate an RFS checkpoint with this config
# (scripts/lvis/evaluate.sh norcal work_dirs/lvis/rfs/epoch_12.pth). gamma is tuned on held-out data in the
# paper; 0.6 is a starting point, not a published value: sweep it with --cfg-options
# model.roi_head.bbox_head.gamma=G.
_base_ = "./mask_rcnn_r50_fpn_rfs_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="NorCalShared2FCBBoxHead",
            gamma=0.6,
            train_ann_file=data_root + "annotations/lvis_v1_train.json",
        )
    )
)
