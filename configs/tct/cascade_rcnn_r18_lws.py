# Decoupling, LWS (Kang et al., ICLR 2020), stage 2 of Cascade R-CNN R18: the stage-1 box classifiers of
# cascade_rcnn_r18_ce are kept (loaded into LWSPredictor, frozen) and one scale per output (classes and background)
# is learned in each stage, everything else frozen, on class-balanced image sampling, for 300 iterations. The
# scales start at 1, so iteration 0 scores as stage 1 does.
_base_ = "./cascade_rcnn_r18_crt.py"
model = dict(roi_head=dict(bbox_head=dict(cls_predictor_cfg=dict(type="LWSPredictor"))))
custom_hooks = [
    dict(type="ClassifierRetrainHook", trainable=["roi_head.bbox_head.*.fc_cls.scale"], reinit=[])
]
