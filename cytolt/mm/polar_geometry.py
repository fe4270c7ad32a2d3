"""Polar geometry for PolarMask (Xie et al., CVPR 2020): masks -> ray targets, rays -> contours -> masks.

Plain torch, numpy and pycocotools (no mmdet): the head in :mod:`cytolt.mm.polarmask` calls these, and so can any
other code. Coordinates are continuous image pixels, x right and y down, with pixel ``(row i, column j)``
covering ``[j, j + 1) x [i, i + 1)`` (its centre at ``j + 0.5, i + 0.5``: where mmdet's point generator puts
its locations). Ray ``k`` of ``R`` points at angle ``2 pi k / R`` from the x axis (clockwise on screen, since
y points down).

Shapes: ``masks (G, H, W)`` bool, one per instance; ``points (P, 2)`` xy; ``rays (P, R)`` lengths in pixels;
``contours (P, R, 2)`` xy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

from cytolt.losses.polar_iou import RAY_EPS

NUM_RAYS = 36  # the paper's setting: one ray every 10 degrees
# Points x rays x samples handled at once by ray_targets: bounds its memory (~100 MB of indices per chunk).
_CHUNK = 256


def ray_angles(num_rays: int = NUM_RAYS, *, device: torch.device | None = None) -> Tensor:
    """(R,) ray angles in radians, ``2 pi k / R`` for ``k = 0..R-1``."""
    if num_rays < 3:
        raise ValueError(f"num_rays must be >= 3 (a polygon); got {num_rays}")
    return torch.arange(num_rays, device=device, dtype=torch.float32) * (2 * math.pi / num_rays)


def mass_centres(masks: Tensor) -> Tensor:
    """(G, 2) xy centre of mass of each (G, H, W) mask (the paper samples positives around it, not the box
    centre); an empty mask gets its image centre."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be (G, H, W); got {tuple(masks.shape)}")
    g, h, w = masks.shape
    m = masks.float()
    area = m.sum(dim=(1, 2))
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) + 0.5
    cx = (m.sum(dim=1) * xs).sum(dim=1)
    cy = (m.sum(dim=2) * ys).sum(dim=1)
    centre = torch.stack([cx, cy], dim=1) / area.clamp(min=1)[:, None]
    empty = area == 0
    return torch.where(empty[:, None], centre.new_tensor([w / 2, h / 2]).expand(g, 2), centre)


def ray_targets(
    masks: Tensor,
    points: Tensor,
    gt_index: Tensor | None = None,
    *,
    num_rays: int = NUM_RAYS,
    step: float = 1.0,
    max_length: float | None = None,
) -> Tensor:
    """(P, R) length of each ray from ``points`` to the contour of its instance's mask.

    Samples every ``step`` px along each ray and takes the furthest sample inside the mask, plus ``step / 2``
    (the boundary lies between it and the next sample). The furthest, not the first exit, as the authors take
    the farthest contour point at each angle; for a star-shaped instance seen from the point the two agree.
    A ray with no sample inside (a point at the rim of a concave cell, looking out) gets ``RAY_EPS``.

    Args:
        masks: (G, H, W) bool instance masks.
        points: (P, 2) xy in pixels.
        gt_index: (P,) which mask each point's rays are cast in; default all in mask 0.
        num_rays: R.
        step: sampling step along a ray, px.
        max_length: longest ray sampled, px; default the image diagonal.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (G, H, W); got {tuple(masks.shape)}")
    if points.dim() != 2 or points.size(1) != 2:
        raise ValueError(f"points must be (P, 2) xy; got {tuple(points.shape)}")
    if step <= 0:
        raise ValueError(f"step must be > 0 px; got {step}")
    _, h, w = masks.shape
    device = points.device
    if gt_index is None:
        gt_index = torch.zeros(len(points), dtype=torch.long, device=device)
    if max_length is None:
        max_length = math.hypot(h, w)
    t = torch.arange(1, int(math.ceil(max_length / step)) + 1, device=device, dtype=torch.float32) * step
    angles = ray_angles(num_rays, device=device)
    dx, dy = torch.cos(angles), torch.sin(angles)
    masks = masks.to(device=device, dtype=torch.bool)
    out = []
    for start in range(0, len(points), _CHUNK):
        p = points[start : start + _CHUNK].float()
        g = gt_index[start : start + _CHUNK]
        x = p[:, 0, None, None] + dx[None, :, None] * t  # (p, R, S)
        y = p[:, 1, None, None] + dy[None, :, None] * t
        col, row = torch.floor(x).long(), torch.floor(y).long()
        valid = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        inside = masks[g[:, None, None], row.clamp(0, h - 1), col.clamp(0, w - 1)] & valid
        # furthest inside sample: the largest t where inside, 0 where none
        reach = torch.where(inside, t, torch.zeros_like(t)).amax(dim=2)
        out.append(torch.where(reach > 0, reach + step / 2, torch.full_like(reach, RAY_EPS)))
    if not out:
        return points.new_zeros((0, num_rays))
    return torch.cat(out).to(points.dtype)


def rays_to_contours(points: Tensor, rays: Tensor) -> Tensor:
    """(P, R, 2) xy contour vertices ``point + d_k (cos a_k, sin a_k)`` of (P, 2) points and (P, R) rays."""
    if points.dim() != 2 or rays.dim() != 2 or len(points) != len(rays):
        raise ValueError(
            f"points (P, 2) and rays (P, R) expected; got {tuple(points.shape)}, {tuple(rays.shape)}"
        )
    angles = ray_angles(rays.size(1), device=rays.device).to(rays.dtype)
    direction = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (R, 2)
    return points[:, None, :] + rays[:, :, None] * direction[None]


def contour_to_mask(contour: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) bool raster of one (R, 2) xy polygon: the pixels whose centres lie inside it.

    Rasterised by pycocotools, COCO's own polygon rule, whose coordinates are these (a square with corners at
    30 and 70 fills pixels 30..69); an all-NaN contour gives an empty mask.
    """
    contour = np.asarray(contour, dtype=np.float64)
    if contour.ndim != 2 or contour.shape[1] != 2:
        raise ValueError(f"contour must be (R, 2) xy; got {contour.shape}")
    return contours_to_masks(torch.from_numpy(contour)[None], height, width)[0].numpy()


def contours_to_masks(contours: Tensor, height: int, width: int) -> Tensor:
    """(P, height, width) bool masks of (P, R, 2) xy polygons (see :func:`contour_to_mask`), on their device."""
    arr = contours.detach().double().cpu().numpy()
    masks = np.zeros((len(arr), height, width), dtype=bool)
    finite = [i for i in range(len(arr)) if np.isfinite(arr[i]).all()]
    if finite:
        rles = mask_utils.frPyObjects([arr[i].reshape(-1).tolist() for i in finite], height, width)
        masks[finite] = np.moveaxis(mask_utils.decode(rles), -1, 0).astype(bool)
    return torch.from_numpy(masks).to(contours.device)


def contour_boxes(contours: Tensor) -> Tensor:
    """(P, 4) xyxy boxes of (P, R, 2) contours."""
    return torch.cat([contours.amin(dim=1), contours.amax(dim=1)], dim=1)
