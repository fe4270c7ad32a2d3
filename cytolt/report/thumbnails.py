"""Cell crops read through a slide's pyramid: the report's gallery and the review widget's thumbnails.

box: ``(x0, y0, x1, y1)`` level-0 px, pixel ``i`` spanning ``[i, i + 1)``. A crop is the level-0 square of side
``max(min_side, context * longer box side)`` centred on the box, read from the coarsest level that still has
at least ``size`` pixels across it and resized to ``(size, size)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from cytolt.io import Slide

__all__ = ["cell_thumbnail"]


def cell_thumbnail(
    slide: Slide,
    box: Sequence[float],
    *,
    size: int = 96,
    context: float = 1.6,
    min_side: float = 32.0,
    color: Sequence[int] | None = None,
) -> np.ndarray:
    """(size, size, 3) uint8 crop around a box; ``color`` (r, g, b) draws the box outline (1 px).

    The square read has side ``context`` times the larger box side, at least ``min_side`` level-0 px.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(float(min_side), context * max(x1 - x0, y1 - y0), 1.0)
    left, top = math.floor((x0 + x1 - side) / 2), math.floor((y0 + y1 - side) / 2)
    level = slide.best_level_for_downsample(side / size)
    ds = slide.level_downsamples[level]
    n = max(1, math.ceil(side / ds))
    region = slide.read_region((left, top), level, (n, n))
    interpolation = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    out = np.ascontiguousarray(cv2.resize(region, (size, size), interpolation=interpolation))
    if color is not None:
        f = size / (n * ds)  # crop px per level-0 px
        p0 = (round((x0 - left) * f), round((y0 - top) * f))
        p1 = (round((x1 - left) * f) - 1, round((y1 - top) * f) - 1)  # the box's last pixel, inclusive
        cv2.rectangle(out, p0, p1, tuple(int(c) for c in color), 1)
    return out
