"""Foreground mask for cytology slides: stained cells on a pale, nearly white background.

A liquid-based (ThinPrep/TCT) slide is mostly empty glass with cells spread thinly over a round spot, so
"tissue" detection here means finding any stained material, single cells included. At a low resolution
(8 µm per pixel by default) a pixel is foreground when its colour saturation or its optical density
relative to the background is above a threshold: Otsu's threshold of that channel, clipped to a range.
The floor sits above JPEG noise on white glass (Otsu alone splits that noise on an empty slide); the
ceiling keeps pale cytoplasm foreground when a dense slide makes Otsu split cytoplasm from nuclei. Morphology is deliberately light (drop specks smaller than a
small cell, dilate by a margin) so isolated rare cells survive: for screening a missed cell costs more
than a few empty tiles.

    mask        (h, w) bool, True = foreground
    downsample  (x, y) level-0 pixels per mask pixel
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cytolt.io.slide import Slide

_LUT_SATURATION = np.arange(256, dtype=np.float32) / 255.0  # HSV saturation byte -> [0, 1]


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A low-resolution foreground mask and how it maps onto level-0 pixels.

    Attributes:
        mask: (h, w) bool, True where cells or other stained material are.
        downsample: (x, y) level-0 pixels per mask pixel.
        mpp: microns per mask pixel, or None when the slide has no mpp.
        slide_dimensions: (w, h) of level 0.
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    mpp: float | None
    slide_dimensions: tuple[int, int]

    @property
    def foreground_fraction(self) -> float:
        """Fraction of mask pixels that are foreground."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def _integral(self) -> np.ndarray:
        # (h + 1, w + 1) summed-area table, so any box's foreground count is four look-ups.
        cached = self.__dict__.get("_sat")
        if cached is None:
            cached = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), np.int64)
            np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.int64), axis=1, out=cached[1:, 1:])
            object.__setattr__(self, "_sat", cached)
        return cached

    def coverage(self, boxes: np.ndarray) -> np.ndarray:
        """Foreground fraction of each level-0 box.

        Args:
            boxes: (N, 4) level-0 xywh.
        Returns:
            (N,) float64 in [0, 1]; the part of a box outside the slide counts as background.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        h, w = self.mask.shape
        dx, dy = self.downsample
        # Mask pixels the box touches: floor of the start, ceil of the end.
        x0 = np.floor(boxes[:, 0] / dx).astype(np.int64)
        y0 = np.floor(boxes[:, 1] / dy).astype(np.int64)
        x1 = np.maximum(np.ceil((boxes[:, 0] + boxes[:, 2]) / dx).astype(np.int64), x0 + 1)
        y1 = np.maximum(np.ceil((boxes[:, 1] + boxes[:, 3]) / dy).astype(np.int64), y0 + 1)
        area = (x1 - x0) * (y1 - y0)
        cx0, cx1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        cy0, cy1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
        sat = self._integral()
        count = sat[cy1, cx1] - sat[cy0, cx1] - sat[cy1, cx0] + sat[cy0, cx0]
        return count / area

    def fraction_of_tiles(
        self, tile_size: int, *, stride: int | None = None, min_coverage: float = 0.0
    ) -> float:
        """Fraction of a level-0 grid of ``tile_size`` squares (step ``stride``, default no overlap) that
        a TileGrid with this mask keeps: tiles whose coverage is above ``min_coverage``."""
        stride = tile_size if stride is None else stride
        if tile_size <= 0 or stride <= 0:
            raise ValueError(f"tile_size and stride must be positive; got {tile_size}, {stride}")
        width, height = self.slide_dimensions
        xs = np.arange(0, max(1, width - tile_size + stride), stride)
        ys = np.arange(0, max(1, height - tile_size + stride), stride)
        gx, gy = np.meshgrid(xs, ys)
        boxes = np.stack(
            [gx.ravel(), gy.ravel(), np.full(gx.size, tile_size), np.full(gx.size, tile_size)], 1
        )
        return float((self.coverage(boxes) > min_coverage).mean())


def tissue_mask(
    slide: Slide,
    *,
    mpp: float = 8.0,
    max_size: int = 4096,
    saturation_range: tuple[float, float] = (0.07, 0.15),
    density_range: tuple[float, float] = (0.06, 0.2),
    min_area_um2: float = 100.0,
    margin_um: float = 16.0,
) -> TissueMask:
    """Foreground of a cytology slide at about ``mpp`` microns per pixel.

    Args:
        slide: an open slide.
        mpp: mask resolution; the mask is never larger than ``max_size`` a side. If the slide has no mpp,
            the mask is ``max_size`` on its long side and sizes below are taken at 8 µm per pixel.
        saturation_range: (floor, ceiling) of the HSV saturation (0-1) threshold; Otsu's value inside it.
        density_range: (floor, ceiling) of the optical density threshold (log10 units, relative to the
            glass); 0.2 is 63% transmission, far paler than any nucleus.
        min_area_um2: foreground blobs smaller than this are dropped (dust, JPEG noise); 100 µm² keeps a
            single 10-µm cell.
        margin_um: the mask is dilated by this much, so cells at a tile's edge keep the tile.
    Returns:
        TissueMask with ``mask`` (h, w) bool.
    """
    if mpp <= 0 or max_size <= 0:
        raise ValueError(f"mpp and max_size must be positive; got {mpp}, {max_size}")
    width, height = slide.dimensions
    base = slide.mpp
    if base is None:
        size = (max_size, max_size)
    else:
        size = (math.ceil(width * base[0] / mpp), math.ceil(height * base[1] / mpp))
    rgb = slide.thumbnail((min(size[0], max_size), min(size[1], max_size)))
    h, w = rgb.shape[:2]
    downsample = (width / w, height / h)
    mask_mpp = None if base is None else downsample[0] * base[0]
    px_um = mask_mpp if mask_mpp is not None else mpp

    # Both channels go through 256-entry look-up tables: a 3000 x 3000 mask then costs tens of MB, not
    # the hundreds that float arithmetic on the whole RGB thumbnail would.
    saturation = _LUT_SATURATION[cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]]
    density = np.zeros(rgb.shape[:2], np.float32)
    for c in range(3):
        channel = rgb[..., c]
        # Optical density relative to the brightest 1% (the glass), so dim illumination is not "stained".
        glass = max(float(np.percentile(channel[:: max(1, channel.shape[0] // 512)], 99)), 1.0)
        lut = -np.log10(np.clip((np.arange(256, dtype=np.float32) + 1) / (glass + 1), 1e-3, 1.0))
        np.maximum(density, lut[channel], out=density)
    mask = (saturation > _threshold(saturation, saturation_range)) | (
        density > _threshold(density, density_range)
    )

    min_px = int(min_area_um2 / (px_um * px_um))
    if min_px > 1:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_px
        keep[0] = False  # label 0 is the background
        mask = keep[labels]
    radius = int(round(margin_um / px_um))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask.view(np.uint8), kernel).astype(bool)
    return TissueMask(mask=mask, downsample=downsample, mpp=mask_mpp, slide_dimensions=(width, height))


def _threshold(channel: np.ndarray, bounds: tuple[float, float]) -> float:
    """Otsu's threshold of ``channel`` clipped to ``bounds`` = (floor, ceiling)."""
    from skimage.filters import threshold_otsu  # imported here: skimage.filters pulls in scipy (slow)

    floor, ceiling = bounds
    if not 0 <= floor <= ceiling:
        raise ValueError(f"threshold range must be (floor, ceiling) with 0 <= floor <= ceiling; got {bounds}")
    if float(channel.max()) <= floor or float(channel.min()) == float(channel.max()):
        return floor
    return min(max(float(threshold_otsu(channel)), floor), ceiling)
