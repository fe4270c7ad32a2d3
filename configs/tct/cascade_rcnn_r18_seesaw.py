# Cascade R-CNN R18 with Seesaw loss (Wang et al., CVPR 2021) in every box stage: p 0.8, q 2, C + 2 outputs
# (classes, then objectness), each stage with its own cumulative class counts.
_base_ = "./cascade_rcnn_r18_ce.py"
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True, type="CytoltSeesawLoss", num_classes=11, p=0.8, q=2.0, return_dict=True
            )
        )
    )
)
