"""Tests of cytolt.io.focus: sharp tiles read high, defocused ones low, glass is not judged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytolt.io.focus import DEFAULT_FOCUS_THRESHOLD, tile_focus


def _cells(seed: int = 0) -> np.ndarray:
    """A 256-px tile of glass with 12 stained cells, each with a dark, textured nucleus."""
    rng = np.random.default_rng(seed)
    tile = np.full((256, 256, 3), 240, np.uint8)
    for _ in range(12):
        cx, cy = (int(v) for v in rng.integers(20, 236, 2))
        cv2.ellipse(tile, (cx, cy), (18, 13), int(rng.integers(0, 180)), 0, 360, (200, 140, 170), -1)
        cv2.ellipse(tile, (cx, cy), (5, 4), 0, 0, 360, (70, 50, 100), -1)
    grain = rng.integers(-12, 13, tile.shape)
    return np.clip(tile.astype(int) + grain * (tile < 230), 0, 255).astype(np.uint8)


def test_defocus_lowers_sharpness_past_the_threshold() -> None:
    sharp = _cells()
    blurred = [cv2.GaussianBlur(sharp, (0, 0), sigma) for sigma in (1.0, 2.0, 4.0, 6.0)]  # px at 0.5 um/px
    values, cellular = tile_focus(np.stack([sharp, *blurred]))
    assert (np.diff(values) < 0).all()  # more blur, less sharpness
    assert values[0] > DEFAULT_FOCUS_THRESHOLD > values[-1]
    assert (cellular > 0.05).all()


def test_glass_is_not_judged_and_inputs_are_checked() -> None:
    glass = np.full((256, 256, 3), 241, np.uint8)
    values, cellular = tile_focus(glass)  # one (H, W, 3) tile is a batch of one
    assert np.isnan(values[0]) and cellular[0] == 0.0
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\) uint8"):
        tile_focus(glass.astype(np.float32))
