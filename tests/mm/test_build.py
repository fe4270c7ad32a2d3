"""The foundation check: an mmdet config that imports cytolt.mm builds RetinaNet-R18 and trains one CPU step."""

from __future__ import annotations

import textwrap

import pytest
import torch

mmdet = pytest.importorskip("mmdet")  # part of the pinned stack; absent only outside `make setup`

CONFIG = textwrap.dedent(
    """
    custom_imports = dict(imports=['cytolt.mm'], allow_failed_imports=False)
    model = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=False),
        backbone=dict(type='ResNet', depth=18, base_channels=32, num_stages=4, out_indices=(1, 2, 3),
                      norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
        neck=dict(type='FPN', in_channels=[64, 128, 256], out_channels=64, num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=4, in_channels=64, stacked_convs=2, feat_channels=64,
            norm_cfg=dict(type='GN', num_groups=16),
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2, scales_per_octave=3,
                                  ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=100))
    """
)


def _batch(n: int = 2, size: int = 128):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0),
                pad_shape=(size, size),
                batch_input_shape=(size, size),
            )
        )
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 40.0, 110.0, 90.0]]),
            labels=torch.tensor([0, 3]),
        )
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_retinanet_r18_builds_and_trains_one_step(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper

    register_all_modules()
    path = tmp_path / "retinanet_r18.py"
    path.write_text(CONFIG)
    cfg = Config.fromfile(str(path))  # runs custom_imports, i.e. imports cytolt.mm
    import sys

    assert "cytolt.mm" in sys.modules
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(_batch(), wrapper)
    assert set(losses) >= {"loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v).all() for v in losses.values())
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    assert changed > 0, "one SGD step should change the weights"


def test_mmcv_ops_match_torchvision_nms():
    from mmcv.ops import nms
    from torchvision.ops import nms as tv_nms

    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(200, 2, generator=gen) * 200
    wh = torch.rand(200, 2, generator=gen) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(200, generator=gen)
    _, keep = nms(boxes, scores, 0.5)
    assert torch.equal(keep.sort().values, tv_nms(boxes, scores, 0.5).sort().values)
