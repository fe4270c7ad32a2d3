"""tissue_mask on generated cytology-like slides, and TissueMask's box coverage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from cytolt.io import TissueMask, open_slide, tissue_mask

MPP = 0.5  # µm per level-0 pixel of the slides below


def _write(path: Path, image: np.ndarray, synth, *, mpp: float | None = MPP) -> Path:
    if mpp is None:
        tifffile.imwrite(path, image, tile=(128, 128), compression="jpeg", photometric="rgb", metadata=None)
        return path
    return synth.write_generic(path, image, levels=3, mpp=mpp)


def _glass(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Empty glass: near-white with a little noise, as a scanner records it."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(236, 2.0, (height, width, 3)), 0, 255).astype(np.uint8)


def test_band_of_cells_is_foreground_and_glass_is_not(tmp_path: Path, synth) -> None:
    image = _glass(2048, 1024)
    image[:, 512:1024] = synth.cells_image(512, 1024, seed=5, cells=300)  # a vertical band of cells
    with open_slide(_write(tmp_path / "band.tiff", image, synth)) as slide:
        mask = tissue_mask(slide, mpp=8.0)
    assert mask.mpp == pytest.approx(8.0)
    assert mask.mask.shape == (64, 128)  # 1024 * 0.5 / 8, 2048 * 0.5 / 8
    columns = mask.mask.mean(axis=0)
    band = slice(512 // 16, 1024 // 16)
    assert columns[band].mean() > 0.8
    # Far from the band (beyond the 16-µm margin) the glass stays background.
    assert columns[: 512 // 16 - 2].max() == 0 and columns[1024 // 16 + 2 :].max() == 0
    kept = mask.fraction_of_tiles(256)
    assert 0.25 <= kept <= 0.5  # 2 (or 3 with the margin) of 8 tile columns


def test_single_small_cell_survives(tmp_path: Path) -> None:
    image = _glass(1024, 1024, seed=1)
    # One 12-µm HSIL-like cell (24 px at 0.5 µm/px): blue-green cytoplasm, dark nucleus.
    cv2.circle(image, (700, 300), 12, (150, 195, 200), -1)
    cv2.circle(image, (700, 300), 6, (60, 40, 100), -1)
    path = tmp_path / "one.tiff"
    tifffile.imwrite(
        path,
        image,
        tile=(128, 128),
        compression="jpeg",
        photometric="rgb",
        metadata=None,
        resolution=(1e4 / MPP, 1e4 / MPP),
        resolutionunit="CENTIMETER",
    )
    with open_slide(path) as slide:
        mask = tissue_mask(slide)
    ys, xs = np.nonzero(mask.mask)
    assert ys.size > 0
    dx, dy = mask.downsample
    # Every foreground pixel lies within cell radius + margin (+ a pixel) of the cell.
    assert np.all(np.hypot(xs * dx - 700, ys * dy - 300) < (12 + 32 + 2 * dx))
    assert mask.coverage(np.array([[700 - 64, 300 - 64, 128, 128]]))[0] > 0


def test_empty_glass_gives_an_empty_mask(tmp_path: Path, synth) -> None:
    with open_slide(_write(tmp_path / "glass.tiff", _glass(1024, 768, seed=2), synth)) as slide:
        mask = tissue_mask(slide)
    assert mask.foreground_fraction == 0.0
    assert mask.fraction_of_tiles(256) == 0.0


def test_slide_without_mpp_uses_max_size(tmp_path: Path, synth) -> None:
    image = synth.cells_image(800, 400, seed=4, cells=60)
    with open_slide(_write(tmp_path / "nompp.tiff", image, synth, mpp=None)) as slide:
        assert slide.mpp is None
        mask = tissue_mask(slide, max_size=200)
    assert mask.mpp is None and mask.mask.shape == (100, 200)
    assert mask.downsample == (4.0, 4.0)
    assert 0 < mask.foreground_fraction < 1


def test_coverage_of_boxes() -> None:
    grid = np.zeros((4, 4), bool)
    grid[0, 0] = grid[0, 1] = grid[3, 3] = True
    mask = TissueMask(mask=grid, downsample=(10.0, 10.0), mpp=None, slide_dimensions=(40, 40))
    boxes = np.array(
        [
            [0, 0, 20, 20],  # mask pixels (0..1, 0..1): 2 of 4 foreground -> 0.5
            [5, 0, 10, 10],  # touches mask columns 0 and 1 of row 0: 2 of 2 -> 1.0
            [20, 20, 20, 20],  # rows/cols 2..3: only (3, 3) -> 0.25
            [30, 30, 20, 20],  # half outside the slide: (3, 3) of a 2x2 box -> 0.25
            [100, 100, 10, 10],  # entirely outside -> 0
        ]
    )
    np.testing.assert_allclose(mask.coverage(boxes), [0.5, 1.0, 0.25, 0.25, 0.0])
    # 10x10 tiles on the 40x40 slide: 16 tiles, 3 with foreground.
    assert mask.fraction_of_tiles(10) == pytest.approx(3 / 16)
    assert mask.fraction_of_tiles(10, min_coverage=0.5) == pytest.approx(3 / 16)
    assert mask.fraction_of_tiles(20) == pytest.approx(2 / 4)


def test_bad_arguments() -> None:
    mask = TissueMask(mask=np.zeros((2, 2), bool), downsample=(1.0, 1.0), mpp=None, slide_dimensions=(2, 2))
    with pytest.raises(ValueError):
        mask.fraction_of_tiles(0)


def test_uniformly_stained_slide_is_all_foreground(tmp_path: Path, synth) -> None:
    # Otsu has nothing to split on a single colour; the floor decides, and stained means foreground.
    image = np.empty((512, 512, 3), np.uint8)
    image[:] = (225, 165, 185)
    with open_slide(_write(tmp_path / "pink.tiff", image, synth)) as slide:
        mask = tissue_mask(slide)
    assert mask.foreground_fraction == 1.0


def test_dense_slide_keeps_pale_cytoplasm(tmp_path: Path) -> None:
    # Dense smear: pale cytoplasm everywhere, dark nuclei in places. Otsu alone would split cytoplasm from
    # nuclei; the ceiling keeps the cytoplasm (saturation (220 - 185) / 220 = 0.16) foreground.
    image = np.empty((512, 512, 3), np.uint8)
    image[:] = (220, 185, 200)
    image[::64, ::64] = (60, 40, 100)
    for y in range(0, 512, 64):
        for x in range(0, 512, 64):
            cv2.circle(image, (x + 32, y + 32), 8, (60, 40, 100), -1)
    path = tmp_path / "dense.tiff"
    tifffile.imwrite(
        path,
        image,
        tile=(128, 128),
        compression="zlib",
        photometric="rgb",
        metadata=None,
        resolution=(1e4 / MPP, 1e4 / MPP),
        resolutionunit="CENTIMETER",
    )
    with open_slide(path) as slide:
        mask = tissue_mask(slide, margin_um=0)
    assert mask.foreground_fraction == 1.0


def test_bad_threshold_range(tmp_path: Path, synth) -> None:
    with open_slide(_write(tmp_path / "cells.tiff", synth.cells_image(256, 256), synth)) as slide:
        with pytest.raises(ValueError, match="floor, ceiling"):
            tissue_mask(slide, saturation_range=(0.2, 0.1))
