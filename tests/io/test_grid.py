"""TileGrid: coverage of the slide, row-major order, level alignment, mpp footprints, mask filtering."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cytolt.io import SlideError, TileGrid, TissueMask, open_slide


def _covered(grid: TileGrid, width: int, height: int) -> np.ndarray:
    hits = np.zeros((height, width), bool)
    for tile in grid:
        hits[max(tile.y, 0) : tile.y + tile.h, max(tile.x, 0) : tile.x + tile.w] = True
    return hits


@pytest.mark.parametrize(("tile", "overlap"), [(128, 0), (100, 0), (128, 32), ((96, 64), 16)])
def test_level0_tiles_cover_the_slide_in_row_major_order(generic_tiff: Path, tile, overlap: int) -> None:
    with open_slide(generic_tiff) as slide:
        grid = TileGrid(slide, tile_size=tile, overlap=overlap)
    tw, th = (tile, tile) if isinstance(tile, int) else tile
    cols = 1 + math.ceil((700 - tw) / (tw - overlap))
    rows = 1 + math.ceil((530 - th) / (th - overlap))
    assert len(grid) == grid.total == rows * cols and grid.fraction_kept == 1.0
    assert _covered(grid, 700, 530).all()
    order = [(t.row, t.col) for t in grid]
    assert order == sorted(order)  # row-major
    assert grid[1].x - grid[0].x == tw - overlap and grid[cols].y - grid[0].y == th - overlap
    assert (grid.xywh[:, 2:] == (tw, th)).all()


def test_level_tiles_are_aligned_to_level_pixels(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes.tiff") as slide:  # downsamples 1, 2, 4.016, 8.086
        for level in (1, 2, 3):
            grid = TileGrid(slide, tile_size=16, level=level)
            ds = slide.level_downsamples[level]
            starts = np.unique(grid.xywh[:, 0])
            # read_region maps x to floor(x / ds): exactly k * 16 at the level.
            np.testing.assert_array_equal(np.floor(starts / ds), np.arange(len(starts)) * 16)
            assert grid.footprint == (round(16 * ds), round(16 * ds))
            np.testing.assert_array_equal(
                grid.read(slide, 3), slide.read_region(tuple(grid.xywh[3, :2]), level, (16, 16))
            )


def test_mpp_grid_footprint_and_reads(generic_tiff: Path) -> None:
    with open_slide(generic_tiff) as slide:  # 0.5 µm/px
        grid = TileGrid(slide, tile_size=64, mpp=1.5)
        assert grid.footprint == (192, 192) and grid.level is None
        assert len(grid) == math.ceil(700 / 192) * math.ceil(530 / 192)
        tile = grid[5]
        np.testing.assert_array_equal(grid.read(slide, 5), slide.read_at_mpp((tile.x, tile.y), 1.5, (64, 64)))


def test_mpp_grid_needs_an_mpp(tmp_path: Path) -> None:
    path = tmp_path / "nompp.tiff"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), photometric="rgb", metadata=None)
    with open_slide(path) as slide, pytest.raises(SlideError, match="mpp="):
        TileGrid(slide, tile_size=16, mpp=1.0)


def test_mask_skips_empty_tiles_and_reports_the_fraction(generic_tiff: Path) -> None:
    with open_slide(generic_tiff) as slide:
        # A 7x6 mask (100 level-0 px per mask pixel) with foreground in the top-left 2x2 only.
        grid_mask = np.zeros((6, 7), bool)
        grid_mask[:2, :2] = True
        mask = TissueMask(mask=grid_mask, downsample=(100.0, 100.0), mpp=None, slide_dimensions=(700, 530))
        grid = TileGrid(slide, tile_size=100, mask=mask)
        full = TileGrid(slide, tile_size=100)
    assert grid.total == full.total == 7 * 6
    assert [(t.row, t.col) for t in grid] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [t.index for t in grid] == [0, 1, 2, 3]
    assert grid.fraction_kept == pytest.approx(4 / 42)
    np.testing.assert_allclose(grid.coverage, 1.0)
    assert grid.fraction_kept == pytest.approx(mask.fraction_of_tiles(100))


def test_indexing_and_pickling(generic_tiff: Path) -> None:
    with open_slide(generic_tiff) as slide:
        grid = TileGrid(slide, tile_size=128)
    assert grid[-1] == grid[len(grid) - 1]
    with pytest.raises(IndexError):
        grid[len(grid)]
    again = pickle.loads(pickle.dumps(grid))
    np.testing.assert_array_equal(again.xywh, grid.xywh)
    assert again.spec == grid.spec
    with pytest.raises(ValueError):
        grid.xywh[0, 0] = 5  # read-only


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tile_size": 0},
        {"tile_size": 64, "overlap": 64},
        {"tile_size": 64, "overlap": -1},
        {"tile_size": 64, "mpp": 1.0, "level": 1},
        {"tile_size": 64, "level": 9},
    ],
)
def test_bad_arguments(generic_tiff: Path, kwargs: dict) -> None:
    with open_slide(generic_tiff) as slide, pytest.raises(ValueError):
        TileGrid(slide, **kwargs)


def test_mask_of_another_slide_is_refused(generic_tiff: Path) -> None:
    other = TissueMask(
        mask=np.ones((4, 4), bool), downsample=(10.0, 10.0), mpp=None, slide_dimensions=(40, 40)
    )
    with open_slide(generic_tiff) as slide, pytest.raises(ValueError, match="mask was made for"):
        TileGrid(slide, tile_size=64, mask=other)
