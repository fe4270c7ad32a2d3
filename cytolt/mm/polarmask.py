"""PolarMask for mmdet 3 (Xie et al., "PolarMask: Single Shot Instance Segmentation with Polar Representation",
CVPR 2020): an FCOS-style head that predicts, per location, class scores, 36 ray lengths to the instance's
contour and a polar centerness; the mask is the polygon through the rays' ends.

Registered in mmdet's ``MODELS`` on import:

- ``PolarMaskHead``: FCOS's towers and per-level ``Scale``; the regression branch has ``num_rays`` outputs.
  Positives are the locations within ``center_sample_radius`` strides of the instance's **mass centre** (the
  paper's sampling; FCOS uses the box centre) and inside its box, in the FPN level whose regress range holds
  the box's largest side distance; the smallest box wins a location two instances claim. Targets are the ray
  lengths from each positive to its mask's contour (:func:`cytolt.mm.polar_geometry.ray_targets`, cast on the
  ground-truth masks on the fly, so the data pipeline only needs ``LoadAnnotations(with_mask=True)``). Losses:
  ``loss_cls`` (focal), ``loss_mask`` (Polar IoU, weighted by the polar centerness target as FCOS weights its
  IoU loss), ``loss_centerness`` (BCE against ``sqrt(min d / max d)``). At test time score = class score x
  centerness, top-k per level, contours -> boxes -> class-wise box NMS (the authors' test) -> masks rasterised
  at the original image size in ``pred_instances.masks`` ((N, H, W) bool), which mmdet's ``CocoMetric``
  (``metric='segm'``) scores.
- ``PolarIoULoss``: :class:`cytolt.losses.polar_iou.PolarIoULoss`.
- ``PolarMask``: the single-stage detector (backbone, neck, this head).

Adapted: the rays are predicted as ``exp(scale * x) * stride`` (the paper: ``exp(scale * x)`` in pixels), so an
untrained head starts at rays of one stride (8-32 px, the size of the cells) rather than 1 px; the Polar IoU loss
is scale-free, so this changes the starting point, not the objective.
"""

from __future__ import annotations

from typing import Any

import torch
from mmcv.cnn import Scale
from mmcv.ops import batched_nms
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.dense_heads.anchor_free_head import AnchorFreeHead
from mmdet.models.detectors import SingleStageDetector
from mmdet.models.utils import filter_scores_and_topk
from mmdet.registry import MODELS
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor, nn

from cytolt.losses import polar_iou
from cytolt.mm import polar_geometry as geo

__all__ = ["PolarIoULoss", "PolarMask", "PolarMaskHead"]

INF = 1e8
# log-ray clamp before exp: e^10 strides is far beyond any image, and exp stays finite in half precision.
_MAX_LOG_RAY = 10.0

PolarIoULoss = polar_iou.PolarIoULoss
MODELS.register_module(name="PolarIoULoss", module=PolarIoULoss)


@MODELS.register_module()
class PolarMask(SingleStageDetector):
    """PolarMask (Xie et al. 2020): backbone + FPN + :class:`PolarMaskHead`; predictions carry ``masks``."""


@MODELS.register_module()
class PolarMaskHead(FCOSHead):
    """PolarMask's head on FCOS's structure (see the module docstring).

    Args:
        num_classes: foreground classes.
        in_channels: FPN channels.
        num_rays: rays per location (the paper: 36, every 10 degrees).
        ray_step: sampling step along a ray when the targets are cast, px.
        center_sample_radius: positives lie within this many strides of the mass centre (the paper: 1.5).
        loss_mask: the ray loss (``PolarIoULoss``).
        **kwargs: FCOSHead's (``regress_ranges``, ``stacked_convs``, ``feat_channels``, ``strides``,
            ``norm_cfg``, ``loss_cls``, ``loss_centerness``, ``test_cfg``, ...).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        num_rays: int = geo.NUM_RAYS,
        ray_step: float = 1.0,
        center_sample_radius: float = 1.5,
        loss_mask: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if num_rays < 3:
            raise ValueError(f"num_rays must be >= 3 (a polygon); got {num_rays}")
        for key in ("loss_bbox", "norm_on_bbox", "center_sampling"):
            if key in kwargs:
                raise ValueError(f"PolarMaskHead sets {key} itself (rays: loss_mask; sampling: always on)")
        self.num_rays = num_rays
        self.ray_step = ray_step
        super().__init__(
            num_classes,
            in_channels,
            center_sampling=True,
            center_sample_radius=center_sample_radius,
            norm_on_bbox=False,
            loss_bbox=loss_mask or dict(type="PolarIoULoss", loss_weight=1.0),
            **kwargs,
        )

    def _init_predictor(self) -> None:
        super()._init_predictor()
        self.conv_reg = nn.Conv2d(self.feat_channels, self.num_rays, 3, padding=1)

    def forward_single(self, x: Tensor, scale: Scale, stride: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level: class logits (B, C, H, W), ray lengths in px (B, R, H, W), centerness logits (B, 1, H, W)."""
        cls_score, reg_pred, cls_feat, reg_feat = AnchorFreeHead.forward_single(self, x)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        rays = scale(reg_pred).float().clamp(max=_MAX_LOG_RAY).exp() * stride
        return cls_score, rays, centerness

    # ----- training -------------------------------------------------------------------------------------------

    def _get_targets_single(
        self,
        gt_instances: InstanceData,
        points: Tensor,
        regress_ranges: Tensor,
        num_points_per_lvl: list[int],
    ) -> tuple[Tensor, Tensor]:
        """(P,) labels (``num_classes`` = background) and (P, R) ray targets of one image's points."""
        num_points, num_gts = points.size(0), len(gt_instances)
        labels_bg = gt_instances.labels.new_full((num_points,), self.num_classes)
        rays = points.new_zeros((num_points, self.num_rays))
        if num_gts == 0:
            return labels_bg, rays
        if "masks" not in gt_instances:
            raise ValueError(
                "PolarMaskHead needs gt masks: add LoadAnnotations(with_mask=True) to the pipeline"
            )
        masks = gt_instances.masks.to_tensor(dtype=torch.bool, device=points.device)
        boxes = gt_instances.bboxes
        centres = geo.mass_centres(masks)  # (G, 2)
        xs, ys = points[:, 0, None], points[:, 1, None]  # (P, 1)
        ltrb = torch.stack(
            (xs - boxes[:, 0], ys - boxes[:, 1], boxes[:, 2] - xs, boxes[:, 3] - ys), dim=-1
        )  # (P, G, 4)
        radius = torch.cat(
            [
                points.new_full((n,), s * self.center_sample_radius)
                for n, s in zip(num_points_per_lvl, self.strides, strict=True)
            ]
        )[:, None]
        near_centre = ((xs - centres[:, 0]).abs() < radius) & ((ys - centres[:, 1]).abs() < radius)
        in_box = ltrb.min(dim=-1).values > 0
        reach = ltrb.max(dim=-1).values
        in_range = (reach >= regress_ranges[:, None, 0]) & (reach <= regress_ranges[:, None, 1])
        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].repeat(num_points, 1)
        areas[~(near_centre & in_box & in_range)] = INF
        min_area, gt_index = areas.min(dim=1)
        labels = gt_instances.labels[gt_index]
        labels[min_area == INF] = self.num_classes
        pos = min_area < INF
        if pos.any():
            diag = float(torch.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).max())
            rays[pos] = geo.ray_targets(
                masks,
                points[pos],
                gt_index[pos],
                num_rays=self.num_rays,
                step=self.ray_step,
                max_length=diag + self.ray_step,
            )
        return labels, rays

    def loss_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        centernesses: list[Tensor],
        batch_gt_instances: list[InstanceData],
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list[InstanceData] | None = None,
    ) -> dict[str, Tensor]:
        """``loss_cls`` (focal over all locations), ``loss_mask`` (Polar IoU), ``loss_centerness`` (BCE)."""
        featmap_sizes = [f.size()[-2:] for f in cls_scores]
        points = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device
        )
        labels, ray_targets = self.get_targets(points, batch_gt_instances)
        flat_cls = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels) for c in cls_scores])
        flat_rays = torch.cat([r.permute(0, 2, 3, 1).reshape(-1, self.num_rays) for r in bbox_preds])
        flat_ctr = torch.cat([c.permute(0, 2, 3, 1).reshape(-1) for c in centernesses])
        flat_labels = torch.cat(labels)
        flat_targets = torch.cat(ray_targets)

        pos = ((flat_labels >= 0) & (flat_labels < self.num_classes)).nonzero().reshape(-1)
        num_pos = max(reduce_mean(torch.tensor(len(pos), dtype=torch.float, device=flat_cls.device)), 1.0)
        loss_cls = self.loss_cls(flat_cls, flat_labels, avg_factor=num_pos)
        pos_rays, pos_targets, pos_ctr = flat_rays[pos], flat_targets[pos], flat_ctr[pos]
        if len(pos):
            ctr_targets = polar_iou.polar_centerness(pos_targets)
            ctr_denorm = max(reduce_mean(ctr_targets.sum().detach()), 1e-6)
            loss_mask = self.loss_bbox(pos_rays, pos_targets, weight=ctr_targets, avg_factor=ctr_denorm)
            loss_centerness = self.loss_centerness(pos_ctr, ctr_targets, avg_factor=num_pos)
        else:  # keep the graph connected (DDP) with zero losses
            loss_mask = pos_rays.sum()
            loss_centerness = pos_ctr.sum()
        return dict(loss_cls=loss_cls, loss_mask=loss_mask, loss_centerness=loss_centerness)

    # ----- inference ------------------------------------------------------------------------------------------

    def predict_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        score_factors: list[Tensor] | None = None,
        batch_img_metas: list[dict] | None = None,
        cfg: Any = None,
        rescale: bool = False,
        with_nms: bool = True,
    ) -> list[InstanceData]:
        """Per image: ``bboxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,), ``masks`` (N, H, W) bool at the
        original image size when ``rescale`` (else the network input's), ``contours`` (N, R, 2) xy."""
        if score_factors is None or batch_img_metas is None:
            raise ValueError("PolarMaskHead.predict_by_feat needs the centerness maps and the image metas")
        cfg = self.test_cfg if cfg is None else cfg
        featmap_sizes = [f.size()[-2:] for f in cls_scores]
        points = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device
        )
        return [
            self._predict_single(
                [c[i] for c in cls_scores],
                [r[i] for r in bbox_preds],
                [s[i] for s in score_factors],
                points,
                meta,
                cfg,
                rescale,
                with_nms,
            )
            for i, meta in enumerate(batch_img_metas)
        ]

    def _predict_single(
        self,
        cls_scores: list[Tensor],
        rays: list[Tensor],
        centernesses: list[Tensor],
        points: list[Tensor],
        meta: dict,
        cfg: Any,
        rescale: bool,
        with_nms: bool,
    ) -> InstanceData:
        nms_pre = cfg.get("nms_pre", -1)
        kept_points, kept_rays, kept_scores, kept_labels = [], [], [], []
        for cls, ray, ctr, pts in zip(cls_scores, rays, centernesses, points, strict=True):
            scores = cls.permute(1, 2, 0).reshape(-1, self.cls_out_channels).sigmoid()
            results = dict(
                rays=ray.permute(1, 2, 0).reshape(-1, self.num_rays),
                points=pts,
                centerness=ctr.permute(1, 2, 0).reshape(-1).sigmoid(),
            )
            scores, labels, _, kept = filter_scores_and_topk(scores, cfg.score_thr, nms_pre, results)
            kept_points.append(kept["points"])
            kept_rays.append(kept["rays"])
            kept_scores.append(scores * kept["centerness"])
            kept_labels.append(labels)
        pts, ray, scores, labels = (torch.cat(t) for t in (kept_points, kept_rays, kept_scores, kept_labels))
        contours = geo.rays_to_contours(pts, ray)
        h, w = meta["img_shape"][:2]
        contours = torch.stack([contours[..., 0].clamp(0, w), contours[..., 1].clamp(0, h)], dim=-1)
        if rescale:
            sx, sy = meta["scale_factor"][:2]
            contours = contours / contours.new_tensor([sx, sy])
            h, w = meta["ori_shape"][:2]
        boxes = geo.contour_boxes(contours)
        min_size = cfg.get("min_bbox_size", -1)
        if min_size >= 0:
            big = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
            boxes, scores, labels, contours = boxes[big], scores[big], labels[big], contours[big]
        if with_nms and len(boxes):
            _, keep = batched_nms(boxes, scores, labels, cfg.nms)
            keep = keep[: cfg.max_per_img]
            boxes, scores, labels, contours = boxes[keep], scores[keep], labels[keep], contours[keep]
        out = InstanceData()
        out.bboxes = boxes
        out.scores = scores
        out.labels = labels
        out.contours = contours
        out.masks = geo.contours_to_masks(contours, int(h), int(w))
        return out
