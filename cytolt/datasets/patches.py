"""Training patches from a slide: windows at a chosen mpp around annotated boxes, and background from the cellular area.

Rules (docs/datasets.md):

- **Placement.** Boxes are visited top to bottom, left to right; each box that no earlier patch holds whole gets
  a patch centred on it (moved inside the slide where the slide is larger than the patch). So every box lies
  whole in at least one patch, except a box larger than a patch (it is kept, clipped, in the patch centred on
  it; :attr:`Patch.whole` says which).
- **Boxes in a patch.** Every box that overlaps the patch by at least ``min_visible`` of its area is kept,
  clipped to the patch. A box cut by the edge below that is left out, and its class is listed in
  :attr:`Patch.not_exhaustive` (the patch shows part of an object it does not label, so it is no negative
  for that class).
- **Background.** Windows on a grid of half the patch footprint whose cellular area (``cytolt.io.tissue_mask``)
  covers at least ``min_tissue`` of the window and that overlap no box, drawn at random (seeded) without
  overlapping each other: ``max(min_background, round(background * annotated patches))`` per slide, or as many
  as fit when fewer.
- **Resampling.** A patch is read from the nearest finer pyramid level (``Slide.best_level_for_downsample``)
  and resized (area-averaged when shrinking). Its top-left corner sits on that level's pixel grid, and
  :class:`PatchWindow` keeps the exact level-0 origin and scale, so boxes map to the patch without drift.

Glossary
    boxes_l0     (N, 4) float64 xyxy level-0 px.
    labels       (N,) int training labels; -1 marks a place to cover with a patch without labelling it (a hard
                 negative: a rejected detection).
    footprint    the level-0 extent of a patch: ``size * mpp_out / slide mpp`` px a side.
    patch px     pixels of the ``size`` x ``size`` patch at ``mpp_out`` microns each; box = (box_l0 - origin) / scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cytolt.io import Slide, SlideError, TissueMask, tissue_mask

__all__ = [
    "MIN_TISSUE",
    "MIN_VISIBLE",
    "Patch",
    "PatchWindow",
    "background_windows",
    "cover_windows",
    "extract_patches",
    "read_patch",
    "window_at",
    "window_instances",
]

# A box cut by a patch edge is kept (clipped) when at least half of it is inside: more than half of a cell
# still shows what it is, less is better left unlabelled (and the patch not called exhaustive for its class).
MIN_VISIBLE = 0.5
# A background window must be at least half cellular area, so it teaches what cells that are not annotated
# look like rather than empty glass.
MIN_TISSUE = 0.5


@dataclass(frozen=True)
class PatchWindow:
    """Where a ``size`` x ``size`` patch lies on its slide.

    origin: (x, y) level-0 px of the patch's top-left corner (on the pyramid level's pixel grid).
    scale: (sx, sy) level-0 px per patch px.
    level: the pyramid level read; location: the level-0 (x, y) given to ``Slide.read_region``;
    read_size: the (w, h) level pixels read and resized to ``size``.
    """

    origin: tuple[float, float]
    scale: tuple[float, float]
    size: int
    level: int
    location: tuple[int, int]
    read_size: tuple[int, int]

    @property
    def box_l0(self) -> tuple[float, float, float, float]:
        """The patch's extent, xyxy level-0 px."""
        (x, y), (sx, sy) = self.origin, self.scale
        return x, y, x + self.size * sx, y + self.size * sy

    def to_patch(self, boxes_l0: np.ndarray) -> np.ndarray:
        """(N, 4) level-0 xyxy -> (N, 4) patch px xyxy (not clipped)."""
        (x, y), (sx, sy) = self.origin, self.scale
        return (np.asarray(boxes_l0, np.float64).reshape(-1, 4) - [x, y, x, y]) / [sx, sy, sx, sy]

    def to_level0(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) patch px xyxy -> (N, 4) level-0 xyxy: the inverse of :meth:`to_patch`."""
        (x, y), (sx, sy) = self.origin, self.scale
        return np.asarray(boxes, np.float64).reshape(-1, 4) * [sx, sy, sx, sy] + [x, y, x, y]


@dataclass(frozen=True, eq=False)
class Patch:
    """One extracted patch.

    image: (size, size, 3) uint8 RGB; boxes: (K, 4) float64 xyxy patch px, clipped to the patch; labels: (K,)
    int64; index: (K,) the boxes' rows in the input; whole: (K,) bool, the box lies whole in the patch;
    not_exhaustive: labels of boxes cut by the edge and left out (see the module rules); kind: 'annotation'
    or 'background'.
    """

    window: PatchWindow
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    whole: np.ndarray
    not_exhaustive: tuple[int, ...]
    kind: str


def _level0_per_pixel(slide: Slide, mpp_out: float) -> tuple[float, float]:
    if not (math.isfinite(mpp_out) and mpp_out > 0):
        raise ValueError(f"mpp_out must be a positive number of microns per pixel; got {mpp_out!r}")
    if slide.mpp is None:
        raise SlideError(slide.path, "the file records no microns per pixel; give the slide's mpp (--mpp)")
    return mpp_out / slide.mpp[0], mpp_out / slide.mpp[1]


def window_at(slide: Slide, x: float, y: float, *, mpp_out: float, size: int) -> PatchWindow:
    """The patch window whose top-left corner is at level-0 (x, y), moved left/up onto the read level's grid."""
    if size < 1:
        raise ValueError(f"size must be >= 1 px; got {size}")
    fx, fy = _level0_per_pixel(slide, mpp_out)
    level = slide.best_level_for_downsample(min(fx, fy))
    ds = slide.level_downsamples[level]
    kx, ky = math.floor(x / ds), math.floor(y / ds)
    rw, rh = max(1, round(size * fx / ds)), max(1, round(size * fy / ds))
    # read_region starts at level pixel floor(location / ds): ceil(k * ds) is the integer whose floor is k.
    location = (math.ceil(kx * ds - 1e-9), math.ceil(ky * ds - 1e-9))
    return PatchWindow(
        origin=(kx * ds, ky * ds),
        scale=(rw * ds / size, rh * ds / size),
        size=int(size),
        level=level,
        location=location,
        read_size=(rw, rh),
    )


def read_patch(slide: Slide, window: PatchWindow) -> np.ndarray:
    """(size, size, 3) uint8 RGB pixels of ``window``; parts outside the slide are white."""
    region = slide.read_region(window.location, window.level, window.read_size)
    size = window.size
    if region.shape[:2] == (size, size):
        return region
    shrink = region.shape[1] >= size and region.shape[0] >= size
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _centred_start(centre: float, footprint: float, extent: int) -> float:
    """Top-left coordinate of a window of ``footprint`` centred on ``centre``, kept inside [0, extent]."""
    return min(max(centre - footprint / 2, 0.0), max(extent - footprint, 0.0))


def _holds_whole(window: PatchWindow, boxes: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    x0, y0, x1, y1 = window.box_l0
    return (
        (boxes[:, 0] >= x0 - tol)
        & (boxes[:, 1] >= y0 - tol)
        & (boxes[:, 2] <= x1 + tol)
        & (boxes[:, 3] <= y1 + tol)
    )


def cover_windows(slide: Slide, boxes_l0: np.ndarray, *, mpp_out: float, size: int) -> list[PatchWindow]:
    """Windows such that every box lies whole in one (module rule "Placement"); few boxes larger than a patch
    excepted. Boxes are (N, 4) level-0 xyxy; windows come in the order of the boxes they were centred on."""
    boxes = np.asarray(boxes_l0, np.float64).reshape(-1, 4)
    fx, fy = _level0_per_pixel(slide, mpp_out)
    fw, fh = size * fx, size * fy
    width, height = slide.dimensions
    order = np.lexsort((boxes[:, 0], boxes[:, 1]))
    covered = np.zeros(len(boxes), bool)
    windows = []
    for i in order:
        if covered[i]:
            continue
        b = boxes[i]
        x = _centred_start((b[0] + b[2]) / 2, fw, width)
        y = _centred_start((b[1] + b[3]) / 2, fh, height)
        window = window_at(slide, x, y, mpp_out=mpp_out, size=size)
        windows.append(window)
        covered |= _holds_whole(window, boxes)
        covered[i] = True  # a box larger than the patch is done too: its centred patch is the best there is
    return windows


def window_instances(
    window: PatchWindow, boxes_l0: np.ndarray, labels: np.ndarray, *, min_visible: float = MIN_VISIBLE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """The labelled boxes of a window (module rule "Boxes in a patch").

    Returns (index (K,) rows of the input, boxes (K, 4) patch px clipped, whole (K,) bool, not_exhaustive
    labels); boxes with label -1 are never instances.
    """
    if not 0 < min_visible <= 1:
        raise ValueError(f"min_visible must be in (0, 1]; got {min_visible}")
    boxes = np.asarray(boxes_l0, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    x0, y0, x1, y1 = window.box_l0
    iw = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    visible = np.divide(iw * ih, area, out=np.zeros(len(boxes)), where=area > 0)
    positive = labels >= 0
    keep = positive & (visible >= min_visible - 1e-9)
    cut = positive & (visible > 0) & ~keep
    index = np.flatnonzero(keep)
    patch_boxes = np.clip(window.to_patch(boxes[index]), 0, window.size)
    whole = _holds_whole(window, boxes[index])
    return index, patch_boxes, whole, tuple(sorted(set(labels[cut].tolist())))


def background_windows(
    slide: Slide,
    boxes_l0: np.ndarray,
    count: int,
    *,
    mpp_out: float,
    size: int,
    seed: int | Sequence[int] = 0,
    mask: TissueMask | None = None,
    min_tissue: float = MIN_TISSUE,
) -> list[PatchWindow]:
    """Up to ``count`` windows of cellular area that overlap none of ``boxes_l0`` (module rule "Background"),
    in a seeded random order. ``mask`` defaults to ``tissue_mask(slide)``."""
    if count <= 0:
        return []
    boxes = np.asarray(boxes_l0, np.float64).reshape(-1, 4)
    fx, fy = _level0_per_pixel(slide, mpp_out)
    fw, fh = size * fx, size * fy
    width, height = slide.dimensions
    mask = tissue_mask(slide) if mask is None else mask
    # Candidates every half footprint, so a sparse slide's few cell-free stretches are not missed by a coarse grid.
    xs = np.arange(0, max(width - fw, 0) + 1, fw / 2)
    ys = np.arange(0, max(height - fh, 0) + 1, fh / 2)
    candidates = [window_at(slide, x, y, mpp_out=mpp_out, size=size) for y in ys for x in xs]
    if not candidates:
        return []
    extents = np.array([w.box_l0 for w in candidates], np.float64)
    xywh = np.concatenate([extents[:, :2], extents[:, 2:] - extents[:, :2]], axis=1)
    ok = mask.coverage(xywh) >= min_tissue
    if len(boxes):
        ok &= ~np.array([_overlaps(e, boxes).any() for e in extents], bool)
    chosen: list[int] = []
    for k in np.random.default_rng(seed).permutation(np.flatnonzero(ok)).tolist():
        if len(chosen) == count:
            break
        if not chosen or not _overlaps(extents[k], extents[chosen]).any():
            chosen.append(k)
    return [candidates[k] for k in sorted(chosen)]


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) whether xyxy ``box`` overlaps each of (M, 4) ``boxes`` with positive area."""
    return (boxes[:, 0] < box[2]) & (boxes[:, 2] > box[0]) & (boxes[:, 1] < box[3]) & (boxes[:, 3] > box[1])


def extract_patches(
    slide: Slide,
    boxes_l0: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    mpp_out: float,
    size: int,
    min_visible: float = MIN_VISIBLE,
    background: float = 0.0,
    min_background: int = 0,
    min_tissue: float = MIN_TISSUE,
    seed: int | Sequence[int] = 0,
    mask: TissueMask | None = None,
) -> Iterator[Patch]:
    """Patches of ``size`` px at ``mpp_out`` um/px around the boxes, then background patches (module rules).

    Args:
        slide: an open slide with an mpp (``open_slide(path, mpp=...)`` supplies a missing one).
        boxes_l0: (N, 4) xyxy level-0 px, inside the slide.
        labels: (N,) training labels; -1 = cover with a patch but do not label (a hard negative).
        background: background patches per annotated patch; ``min_background`` the fewest per slide.
        seed: seeds the choice of background windows.
        mask: the slide's tissue mask, when already computed (only read for background patches).
    Yields:
        :class:`Patch`, annotated ones first (``kind='annotation'``), read lazily one at a time.
    """
    boxes = np.asarray(boxes_l0, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"boxes_l0 and labels differ in length: {len(boxes)} and {len(labels)}")
    if background < 0 or min_background < 0:
        raise ValueError(f"background and min_background must be >= 0; got {background}, {min_background}")
    windows = cover_windows(slide, boxes, mpp_out=mpp_out, size=size)
    for window in windows:
        index, patch_boxes, whole, cut = window_instances(window, boxes, labels, min_visible=min_visible)
        yield Patch(
            window=window,
            image=read_patch(slide, window),
            boxes=patch_boxes,
            labels=labels[index],
            index=index,
            whole=whole,
            not_exhaustive=cut,
            kind="annotation",
        )
    n_background = max(int(min_background), round(background * len(windows)))
    empty = np.zeros(0, np.int64)
    for window in background_windows(
        slide, boxes, n_background, mpp_out=mpp_out, size=size, seed=seed, mask=mask, min_tissue=min_tissue
    ):
        yield Patch(
            window=window,
            image=read_patch(slide, window),
            boxes=np.zeros((0, 4)),
            labels=empty,
            index=empty,
            whole=np.zeros(0, bool),
            not_exhaustive=(),
            kind="background",
        )
