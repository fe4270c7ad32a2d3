"""A grid of tiles over a slide, in level-0 pixels, with empty tiles skipped.

    tile_size   (w, h) pixels of each tile as read (at ``level``, or at ``mpp``)
    xywh        (N, 4) int64 level-0 footprint of each kept tile, row-major
    rowcol      (N, 2) int64 grid position of each kept tile

The grid covers the whole slide: the last row and column may run past its edge and read as white. It
holds no open slide (only ``SlideSpec``), so it pickles to worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from cytolt.io.errors import SlideError
from cytolt.io.slide import Slide, SlideSpec, parse_mpp

if TYPE_CHECKING:
    from cytolt.io.tissue import TissueMask


class Tile(NamedTuple):
    """One tile: its index in the grid, grid row/column and level-0 footprint (x, y, w, h)."""

    index: int
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int


class TileGrid:
    """Tiles of ``tile_size`` pixels at a pyramid ``level`` or at ``mpp`` microns per pixel.

    Args:
        slide: the slide the grid covers (only its geometry and ``spec`` are kept).
        tile_size: tile (w, h) in output pixels, or an int for squares.
        overlap: pixels (output scale) shared by neighbouring tiles, 0 <= overlap < tile_size.
        mpp: read tiles resampled to this many microns per pixel (``Slide.read_at_mpp``).
        level: read tiles from this pyramid level (``Slide.read_region``); default 0 if mpp is None.
        mask: skip tiles whose foreground coverage is not above ``min_coverage``.
        min_coverage: 0 keeps every tile with any foreground.
    """

    def __init__(
        self,
        slide: Slide,
        *,
        tile_size: int | tuple[int, int],
        overlap: int = 0,
        mpp: float | tuple[float, float] | None = None,
        level: int | None = None,
        mask: TissueMask | None = None,
        min_coverage: float = 0.0,
    ) -> None:
        tw, th = (
            (tile_size, tile_size) if isinstance(tile_size, int) else (int(tile_size[0]), int(tile_size[1]))
        )
        if tw <= 0 or th <= 0:
            raise ValueError(f"tile_size must be positive; got {tile_size!r}")
        if not 0 <= overlap < min(tw, th):
            raise ValueError(
                f"overlap must be in [0, {min(tw, th)}) for tile_size {tile_size!r}; got {overlap}"
            )
        if mpp is not None and level is not None:
            raise ValueError("give mpp or level, not both")
        self.tile_size = (tw, th)
        self.overlap = int(overlap)
        self.spec: SlideSpec = slide.spec
        self.mpp = parse_mpp(mpp)
        self.level: int | None = None
        width, height = slide.dimensions
        if self.mpp is not None:
            if slide.mpp is None:
                raise SlideError(
                    slide.path,
                    "the file records no microns per pixel; give it with --mpp (cytolt screen, cytolt dataset) or mpp= (open_slide)",
                )
            sx, sy = self.mpp[0] / slide.mpp[0], self.mpp[1] / slide.mpp[1]
            xs = _starts(width, tw, overlap, sx, aligned=False)
            ys = _starts(height, th, overlap, sy, aligned=False)
        else:
            self.level = 0 if level is None else int(level)
            if not 0 <= self.level < slide.level_count:
                raise ValueError(f"level must be in 0..{slide.level_count - 1}; got {level}")
            sx = sy = slide.level_downsamples[self.level]
            xs = _starts(width, tw, overlap, sx, aligned=True)
            ys = _starts(height, th, overlap, sy, aligned=True)
        fw, fh = max(1, round(tw * sx)), max(1, round(th * sy))
        self.footprint = (fw, fh)
        rows, cols = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()  # row-major
        boxes = np.stack([xs[cols], ys[rows], np.full(rows.size, fw), np.full(rows.size, fh)], axis=1)
        self.total = int(rows.size)
        if mask is not None:
            if tuple(mask.slide_dimensions) != (width, height):
                raise ValueError(
                    f"mask was made for a {mask.slide_dimensions} slide; this one is {(width, height)}"
                )
            coverage = mask.coverage(boxes)
            keep = coverage > min_coverage
            self.coverage: np.ndarray | None = coverage[keep]
        else:
            keep = np.ones(rows.size, bool)
            self.coverage = None
        self.xywh = boxes[keep].astype(np.int64)
        self.rowcol = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
        self.xywh.flags.writeable = False
        self.rowcol.flags.writeable = False

    @property
    def fraction_kept(self) -> float:
        """Kept tiles over all tiles of the grid (1.0 without a mask)."""
        return len(self) / self.total if self.total else 0.0

    def __len__(self) -> int:
        return int(self.xywh.shape[0])

    def __getitem__(self, index: int) -> Tile:
        index = range(len(self))[index]  # IndexError and negative indices as for a list
        x, y, w, h = (int(v) for v in self.xywh[index])
        row, col = (int(v) for v in self.rowcol[index])
        return Tile(index, row, col, x, y, w, h)

    def __iter__(self) -> Iterator[Tile]:
        return (self[i] for i in range(len(self)))

    def read(self, slide: Slide, index: int) -> np.ndarray:
        """Pixels of tile ``index`` from ``slide`` (the grid's slide or another handle to it): (h, w, 3) uint8."""
        x, y = int(self.xywh[index, 0]), int(self.xywh[index, 1])
        if self.mpp is not None:
            return slide.read_at_mpp((x, y), self.mpp, self.tile_size)
        return slide.read_region((x, y), self.level, self.tile_size)

    def __repr__(self) -> str:
        how = f"mpp={self.mpp}" if self.mpp is not None else f"level={self.level}"
        return (
            f"TileGrid({self.spec.path!r}, tile_size={self.tile_size}, overlap={self.overlap}, {how}, "
            f"tiles={len(self)}/{self.total})"
        )


def _starts(length: int, tile: int, overlap: int, scale: float, *, aligned: bool) -> np.ndarray:
    """Level-0 start of each tile along one axis so that the tiles cover ``length`` level-0 pixels.

    ``scale`` is level-0 pixels per output pixel. With ``aligned`` (level reads) starts are
    ceil(k * step * scale), whose floor(x / downsample) is exactly k * step at the level.
    """
    step = tile - overlap
    count = 1 + max(0, math.ceil((length / scale - tile) / step - 1e-9))
    positions = np.arange(count, dtype=np.float64) * step * scale
    starts = np.ceil(positions - 1e-9) if aligned else np.round(positions)
    return starts.astype(np.int64)
