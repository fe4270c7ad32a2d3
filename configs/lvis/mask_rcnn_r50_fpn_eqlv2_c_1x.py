# EQLv2 variant, labelled "eqlv2_c": C sigmoid outputs, no objectness output, class scores sigmoid(z_c) at test
# time (cytolt's RoISigmoidLoss default, the layout of the one-stage heads). Everything else is
# mask_rcnn_r50_fpn_eqlv2_1x.py, the authors' form, so the two rows measure the objectness output alone.
_base_ = "./mask_rcnn_r50_fpn_eqlv2_1x.py"
model = dict(roi_head=dict(bbox_head=dict(loss_cls=dict(loss=dict(objectness=False)))))
