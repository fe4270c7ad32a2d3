"""PolarMaskHead: targets from masks, losses, masks out of predict, and a round trip through a synthetic cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import cytolt.mm  # noqa: F401  (registers PolarMaskHead)

SIZE = 64
TEST_CFG = dict(
    nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=50
)


def head(num_classes: int = 3, **extra) -> torch.nn.Module:
    """An 8-channel, one-conv PolarMask head at strides 8 and 16."""
    cfg = dict(
        type="PolarMaskHead",
        num_classes=num_classes,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        strides=[8, 16],
        regress_ranges=((-1, 32), (32, 1e8)),
        norm_cfg=None,
        test_cfg=TEST_CFG,
    )
    cfg.update(extra)
    return MODELS.build(ConfigDict(cfg))


def feats(batch: int = 1) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(batch, 8, SIZE // s, SIZE // s) for s in (8, 16)]


def gt_instances(masks: np.ndarray, labels: list[int]) -> InstanceData:
    gt = InstanceData()
    boxes = []
    for m in masks:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    gt.bboxes = torch.tensor(boxes, dtype=torch.float32)
    gt.labels = torch.tensor(labels)
    gt.masks = BitmapMasks(masks.astype(np.uint8), masks.shape[1], masks.shape[2])
    return gt


def disc_mask(cx: float, cy: float, r: float, size: int = SIZE) -> np.ndarray:
    c = np.arange(size) + 0.5
    return ((c[None, :] - cx) ** 2 + (c[:, None] - cy) ** 2) <= r * r


META = dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0), pad_shape=(SIZE, SIZE))


def test_outputs_are_classes_rays_and_centerness():
    h = head()
    cls, rays, ctr = h(feats(2))
    assert [c.shape for c in cls] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [r.shape for r in rays] == [(2, 36, 8, 8), (2, 36, 4, 4)]
    assert [c.shape for c in ctr] == [(2, 1, 8, 8), (2, 1, 4, 4)]
    assert all((r > 0).all() for r in rays)
    # exp(scale * x) * stride: an untrained head's rays are of the order of its stride
    assert 2 < rays[0].median() < 32 and 4 < rays[1].median() < 64


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="num_rays"):
        head(num_rays=2)
    with pytest.raises(ValueError, match="loss_mask"):
        head(loss_bbox=dict(type="IoULoss"))


def test_targets_sit_at_the_mass_centre_with_disc_rays():
    h = head()
    masks = np.stack([disc_mask(20, 20, 10), disc_mask(44, 44, 6)])
    gt = gt_instances(masks, [2, 0])
    points = h.prior_generator.grid_priors([(8, 8), (4, 4)], dtype=torch.float32, device="cpu")
    labels, rays = h.get_targets(points, [gt])
    labels0, rays0 = labels[0], rays[0]  # stride 8: both discs (box side distances <= 32)
    pos = labels0 < 3
    pos_points = points[0][pos]
    assert set(labels0[pos].tolist()) == {0, 2}
    # 1.5 strides (12 px) around each centre, inside its box
    near = [(pos_points - torch.tensor(c)).abs().max(dim=1).values < 12 for c in ((20, 20), (44, 44))]
    assert (near[0] | near[1]).all()
    at_centre = (pos_points == torch.tensor([20.0, 20.0])).all(dim=1)
    assert at_centre.any()
    assert (rays0[pos][at_centre] - 10).abs().max() <= 1.0
    assert (labels[1] == 3).all()  # nothing at stride 16: its range starts at 32
    assert (rays0[~pos] == 0).all()


def test_loss_is_finite_and_trains_the_rays():
    torch.manual_seed(0)
    h = head()
    x = feats()
    gt = gt_instances(np.stack([disc_mask(28, 30, 14)]), [1])
    opt = torch.optim.Adam(h.parameters(), lr=0.01)
    first = None
    for _ in range(40):
        losses = h.loss_by_feat(*h(x), [gt], [META])
        assert set(losses) == {"loss_cls", "loss_mask", "loss_centerness"}
        assert all(torch.isfinite(v) for v in losses.values())
        first = losses["loss_mask"].item() if first is None else first
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert losses["loss_mask"].item() < 0.5 * first


def test_loss_without_masks_says_what_to_load():
    h = head()
    gt = gt_instances(np.stack([disc_mask(28, 30, 14)]), [1])
    del gt.masks
    with pytest.raises(ValueError, match="with_mask=True"):
        h.loss_by_feat(*h(feats()), [gt], [META])


def test_no_gt_gives_zero_ray_loss():
    h = head()
    gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    gt.masks = BitmapMasks(np.zeros((0, SIZE, SIZE), np.uint8), SIZE, SIZE)
    losses = h.loss_by_feat(*h(feats()), [gt], [META])
    assert losses["loss_mask"].item() == 0 and losses["loss_cls"].item() > 0


def _predict_from_targets(h, masks: np.ndarray, labels: list[int], meta: dict) -> InstanceData:
    """Feed the head's own targets back as its predictions: logits high at positives, rays = targets."""
    sizes = [(SIZE // s, SIZE // s) for s in h.strides]
    points = h.prior_generator.grid_priors(sizes, dtype=torch.float32, device="cpu")
    target_labels, target_rays = h.get_targets(points, [gt_instances(masks, labels)])
    cls, rays, ctr = [], [], []
    for (hh, ww), lab, ray in zip(sizes, target_labels, target_rays, strict=True):
        logits = torch.full((hh * ww, h.num_classes), -10.0)
        pos = lab < h.num_classes
        logits[pos, lab[pos]] = 10.0
        cls.append(logits.T.reshape(1, h.num_classes, hh, ww))
        rays.append(ray.clamp(min=1e-3).T.reshape(1, h.num_rays, hh, ww))
        ctr.append(torch.full((1, 1, hh, ww), 10.0))
    return h.predict_by_feat(cls, rays, ctr, batch_img_metas=[meta], rescale=True)[0]


def test_head_reproduces_a_synthetic_cells_mask():
    from cytolt.synth import cells
    from cytolt.synth.render import Stain, object_mask

    rng = np.random.default_rng(4)
    cell = cells.build("parabasal", rng, SIZE / 2, SIZE / 2, mpp=1.0, stain=Stain.sample(rng))
    mask = object_mask(cell, x0=0, y0=0, width=SIZE, height=SIZE)
    assert 200 < mask.sum() < SIZE * SIZE / 2  # a cell well inside the field
    h = head(regress_ranges=((-1, 1e8), (1e8, 2e8)))  # every location at stride 8
    pred = _predict_from_targets(h, mask[None], [2], META)
    assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == (SIZE, SIZE)
    assert (pred.labels == 2).all() and len(pred) >= 1
    best = pred.masks[pred.scores.argmax()].numpy()
    iou = (best & mask).sum() / (best | mask).sum()
    assert iou > 0.9, iou


def test_predicted_masks_are_at_the_original_size():
    h = head()
    meta = dict(img_shape=(SIZE, SIZE), ori_shape=(2 * SIZE, 2 * SIZE), scale_factor=(0.5, 0.5))
    masks = np.stack([disc_mask(20, 20, 10), disc_mask(44, 44, 8)])
    pred = _predict_from_targets(h, masks, [0, 1], meta)
    assert pred.masks.shape[1:] == (2 * SIZE, 2 * SIZE)
    assert set(pred.labels.tolist()) == {0, 1}  # one per disc after NMS, or more: never another class
    big = pred.masks[pred.labels == 0][0].numpy()
    expected = disc_mask(40, 40, 20, 2 * SIZE)  # the first disc, scaled by 2
    assert (big & expected).sum() / (big | expected).sum() > 0.85
    assert torch.allclose(pred.bboxes[pred.labels == 0][0], torch.tensor([20.0, 20.0, 60.0, 60.0]), atol=3)
    assert pred.contours.shape[1:] == (36, 2)


def test_nothing_above_threshold_gives_empty_masks():
    h = head()
    cls, rays, ctr = h(feats())
    cls = [torch.full_like(c, -20.0) for c in cls]
    pred = h.predict_by_feat(cls, rays, ctr, batch_img_metas=[META], rescale=True)[0]
    assert len(pred) == 0 and pred.masks.shape == (0, SIZE, SIZE)
