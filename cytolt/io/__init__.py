"""Whole-slide image I/O: slide readers, tissue mask, tile grid and a prefetching tile stream.

    open_slide(path) -> Slide          one backend per file: openslide_backend, tiff_backend (table: backends)
    tissue_mask(slide) -> TissueMask   low-resolution foreground (cells on a pale background)
    TileGrid(slide, tile_size=...)     level-0 tiles, empty ones skipped, row-major
    TileStream(grid)                   parallel read + decode, bounded prefetch, uint8 (B, 3, H, W) batches
    slide_pyramid(slide)               one lazy (H, W, 3) SlideLevelArray per level (napari's multiscale data)

Importing this package imports neither torch (only iterating a TileStream does) nor mmdet or napari.
"""

from cytolt.io.backends import BACKEND_CHOICES, open_slide, open_spec
from cytolt.io.errors import SlideError
from cytolt.io.grid import Tile, TileGrid
from cytolt.io.pyramid import SlideLevelArray, slide_pyramid
from cytolt.io.slide import Slide, SlideSpec
from cytolt.io.stream import TileBatch, TileStream
from cytolt.io.tissue import TissueMask, tissue_mask

__all__ = [
    "BACKEND_CHOICES",
    "Slide",
    "SlideError",
    "SlideLevelArray",
    "SlideSpec",
    "Tile",
    "TileBatch",
    "TileGrid",
    "TileStream",
    "TissueMask",
    "open_slide",
    "open_spec",
    "slide_pyramid",
    "tissue_mask",
]
