"""Cells as copy-paste handles them: ``CellInstance`` and the helpers that cut cells out of an annotated image.

Shared by the cell bank (``bank.py``, cells cut once from a dataset) and the transform (``copy_paste.py``, cells
cut from a source image), so neither imports the other for them.

Glossary (all coordinates are pixels of the image the cells come from, x to the right, y down):

- ``image``: (H, W, 3) uint8, channel order is the caller's (stain matching compares colours of the same order).
- ``boxes``: (N, 4) float32 xyxy with pixel-edge convention: a mask whose pixels span columns ``x0..x1``
  inclusive has the box ``(x0, y0, x1 + 1, y1 + 1)`` (the convention of mmdet's ``BitmapMasks.get_bboxes``).
- ``masks``: (N, H, W) bool instance masks, or ``None`` for a boxes-only dataset (cells become soft ellipses).
- ``CellInstance``: one cell cut out of an image with a small context margin: a crop, a soft alpha matte and
  the median background colour of the image it came from (for stain matching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellInstance:
    """One cell ready to paste.

    image: (h, w, 3) uint8 crop around the cell, context margin included.
    alpha: (h, w) float32 in [0, 1]; the cell's matte. The object's mask is ``alpha >= 0.5``; values between 0
        and 1 come from soft elliptical masks (boxes-only data) and are used for blending.
    label: class index.
    background: (3,) float32 median background colour of the source image, or ``None`` (no stain matching).
    """

    image: np.ndarray
    alpha: np.ndarray
    label: int
    background: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"CellInstance.image must be (h, w, 3) uint8; got {self.image.shape} {self.image.dtype}"
            )
        if self.alpha.shape != self.image.shape[:2]:
            raise ValueError(
                f"CellInstance.alpha shape {self.alpha.shape} != image shape {self.image.shape[:2]}"
            )

    @property
    def mask(self) -> np.ndarray:
        """(h, w) bool mask of the cell."""
        return self.alpha >= 0.5


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 xyxy, pixel-edge convention; an empty mask gives (0, 0, 0, 0)."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    xs = masks.any(axis=1)
    ys = masks.any(axis=2)
    for i in range(n):
        x = np.flatnonzero(xs[i])
        y = np.flatnonzero(ys[i])
        if x.size:
            boxes[i] = (x[0], y[0], x[-1] + 1, y[-1] + 1)
    return boxes


def soft_ellipse(height: int, width: int, box: Sequence[float], *, edge: float = 1.5) -> np.ndarray:
    """Soft matte of the ellipse inscribed in ``box`` (xyxy, pixel edges) on an (height, width) canvas.

    Returns (height, width) float32 in [0, 1]: 0.5 on the ellipse rim, rising to 1 inside over about ``edge``
    pixels (a linear ramp in the distance to the rim), so ``alpha >= 0.5`` is the ellipse itself.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ax, ay = max((x1 - x0) / 2.0, 0.5), max((y1 - y0) / 2.0, 0.5)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Normalised radius at pixel centres; (1 - rho) * min(axis) approximates the distance to the rim.
    rho = np.sqrt(((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2)
    dist = (1.0 - rho) * min(ax, ay)
    return np.clip(0.5 + dist / (2.0 * edge), 0.0, 1.0).astype(np.float32)


def ellipse_masks(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 4) xyxy boxes -> (N, H, W) bool masks of the inscribed ellipses (the stand-in for missing masks)."""
    h, w = shape
    out = np.zeros((len(boxes), h, w), bool)
    for i, b in enumerate(np.asarray(boxes, np.float32)):
        x0, y0 = max(int(np.floor(b[0])), 0), max(int(np.floor(b[1])), 0)
        x1, y1 = min(int(np.ceil(b[2])), w), min(int(np.ceil(b[3])), h)
        if x1 <= x0 or y1 <= y0:
            continue
        local = soft_ellipse(y1 - y0, x1 - x0, (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)) >= 0.5
        out[i, y0:y1, x0:x1] = local
    return out


def background_colour(image: np.ndarray, foreground: np.ndarray | None = None) -> np.ndarray:
    """Median colour (3,) float32 of the pixels outside ``foreground`` ((H, W) bool, the cells).

    Falls back to the whole image when fewer than 64 background pixels remain. Every 3rd pixel in each
    direction is enough for a median and 9x cheaper.
    """
    pix = image[::3, ::3].reshape(-1, 3)
    if foreground is not None:
        bg = pix[~foreground[::3, ::3].reshape(-1)]
        if len(bg) >= 64:
            pix = bg
    if len(pix) == 0:
        return np.full(3, 255.0, np.float32)
    return np.median(pix, axis=0).astype(np.float32)


def cut_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None = None,
    *,
    margin: int = 4,
) -> list[CellInstance]:
    """Cut every object of an annotated image into a ``CellInstance``.

    image (H, W, 3) uint8; boxes (N, 4) xyxy; labels (N,); masks (N, H, W) bool or None (soft ellipses from
    boxes). ``margin``: context pixels kept around each box (clipped at the image border). Objects with an
    empty box or empty mask are skipped.
    """
    h, w = image.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if masks is not None:
        fg = masks.any(axis=0) if len(masks) else None
    else:
        fg = ellipse_masks(boxes, (h, w)).any(axis=0) if len(boxes) else None
    bg = background_colour(image, fg)
    out = []
    for i, b in enumerate(boxes):
        x0 = max(int(np.floor(b[0])) - margin, 0)
        y0 = max(int(np.floor(b[1])) - margin, 0)
        x1 = min(int(np.ceil(b[2])) + margin, w)
        y1 = min(int(np.ceil(b[3])) + margin, h)
        if x1 <= x0 or y1 <= y0:
            continue
        if masks is not None:
            alpha = masks[i, y0:y1, x0:x1].astype(np.float32)
        else:
            alpha = soft_ellipse(y1 - y0, x1 - x0, (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0))
        if not (alpha >= 0.5).any():
            continue
        out.append(CellInstance(image[y0:y1, x0:x1].copy(), alpha, int(labels[i]), bg))
    return out
