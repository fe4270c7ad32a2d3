"""Lazy pyramid arrays over an open slide: what napari's ``multiscale=True`` image layers index.

- level array: an (H, W, 3) uint8 array-like over one pyramid level; indexing reads the pixels through
  :meth:`cytolt.io.Slide.read_region`, so a 100,000 x 100,000 slide costs nothing until viewed.
- level pixel ``p`` of a level with downsample ``d`` covers level-0 pixels ``[p * d, (p + 1) * d)``; a read at
  level pixel ``p`` starts at the smallest level-0 ``x`` with ``floor(x / d) == p`` (:func:`_level0`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cytolt.io.slide import Slide

__all__ = ["SlideLevelArray", "slide_pyramid"]


def _level0(pos: int, downsample: float) -> int:
    """Smallest level-0 coordinate whose level pixel, ``floor(x / downsample)``, is ``pos``."""
    x = math.ceil(pos * downsample)
    # pos * downsample is rounded in floating point; step back or forward one pixel when that moved it over.
    while x > 0 and math.floor((x - 1) / downsample) >= pos:
        x -= 1
    while math.floor(x / downsample) < pos:
        x += 1
    return x


class SlideLevelArray:
    """(H, W, 3) uint8 array-like over pyramid level ``level`` of an open slide, read on indexing.

    Supports what napari's multiscale slicing uses: ``shape``, ``dtype``, ``ndim``, ``size``, and basic
    indexing (ints, slices with any step, ``...``). Each ``__getitem__`` is one ``slide.read_region`` of the
    bounding rectangle of the selected rows and columns; ``np.asarray`` reads the whole level, which is refused
    above ``max_pixels`` (level 0 of a real slide does not fit in memory).
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, slide: Slide, level: int, *, max_pixels: int = 1 << 26) -> None:
        if not 0 <= level < slide.level_count:
            raise ValueError(f"{slide.path}: level must be in [0, {slide.level_count}); got {level}")
        self.slide = slide
        self.level = int(level)
        self.downsample = float(slide.level_downsamples[level])
        w, h = slide.level_dimensions[level]
        self.shape = (int(h), int(w), 3)
        self.max_pixels = int(max_pixels)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * 3

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SlideLevelArray({self.slide.path.name!r}, level={self.level}, shape={self.shape})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        h, w, _ = self.shape
        if h * w > self.max_pixels:
            raise ValueError(
                f"{self.slide.path}: level {self.level} is {w} x {h} px, more than max_pixels={self.max_pixels};"
                " index a region instead of converting the whole level"
            )
        out = self[:, :, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}-d slide level: {len(key)}")
        key = key + (slice(None),) * (self.ndim - len(key))
        r_idx, r_drop = self._axis(key[0], self.shape[0], "row")
        c_idx, c_drop = self._axis(key[1], self.shape[1], "column")
        if len(r_idx) == 0 or len(c_idx) == 0:
            out = np.zeros((len(r_idx), len(c_idx), 3), dtype=np.uint8)
        else:
            r0, r1 = int(r_idx.min()), int(r_idx.max()) + 1
            c0, c1 = int(c_idx.min()), int(c_idx.max()) + 1
            loc = (_level0(c0, self.downsample), _level0(r0, self.downsample))
            out = self.slide.read_region(loc, self.level, (c1 - c0, r1 - r0))
            if _strided(r_idx, c_idx):
                out = out[np.ix_(r_idx - r0, c_idx - c0)]
        # an integer index drops its axis, as in numpy
        return out[0 if r_drop else slice(None), 0 if c_drop else slice(None), key[2]]

    @staticmethod
    def _axis(k: Any, n: int, name: str) -> tuple[np.ndarray, bool]:
        """Indices selected on one axis and whether an integer index drops the axis."""
        if isinstance(k, slice):
            return np.arange(*k.indices(n)), False
        if isinstance(k, int | np.integer):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"{name} index {k} out of range for size {n}")
            return np.array([i]), True
        raise TypeError(
            f"slide levels support ints, slices and ...; got {type(k).__name__} for the {name} axis"
        )


def _strided(r_idx: np.ndarray, c_idx: np.ndarray) -> bool:
    """Whether the selection is not simply the contiguous rectangle read (a step other than 1)."""
    return not (np.all(np.diff(r_idx) == 1) and np.all(np.diff(c_idx) == 1))


def slide_pyramid(slide: Slide) -> list[SlideLevelArray]:
    """One :class:`SlideLevelArray` per level, finest first: napari's ``multiscale=True`` data."""
    return [SlideLevelArray(slide, k) for k in range(slide.level_count)]
