# NorCal (Pan et al., NeurIPS 2021) at test time on the RFS baseline: foreground scores divided by
# N_c ** gamma (N_c = training images that contain class c, LVIS's image_count, as the authors' code counts it;
# count_by="instances" is the annotation-count variant), background kept, renormalised. Training is the RFS
# baseline's; evaluate an RFS checkpoint with this config. gamma 0.6 is a starting point, not a published
# value: scripts/lvis/norcal_sweep.py sweeps it on val and writes the chosen one next to the run
# (norcal_gamma.json), which evaluate.sh norcal then uses.
_base_ = "./mask_rcnn_r50_fpn_rfs_1x.py"
data_root = "data/lvis_v1/"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="NorCalShared2FCBBoxHead",
            gamma=0.6,
            count_by="images",
            train_ann_file=data_root + "annotations/lvis_v1_train.json",
        )
    )
)
