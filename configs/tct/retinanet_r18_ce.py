# RetinaNet R18 with softmax cross-entropy, the Grad-Libra paper's baseline (C + 1 outputs, background last): the one-line switch is loss_cls.
_base_ = "./retinanet_r18_focal.py"
model = dict(
    bbox_head=dict(loss_cls=dict(_delete_=True, type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))
)
