"""cytolt.io.pyramid: lazy level arrays that index like numpy arrays and read through the slide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolt.io import SlideLevelArray, open_slide, slide_pyramid
from cytolt.io.pyramid import _level0


@pytest.mark.parametrize("ds", [1.0, 2.0, 4.0, 2.0003, 3.999, 16.01])
def test_level0_position_maps_back_to_the_level_pixel(ds):
    for pos in [0, 1, 7, 1023, 4095, 123457]:
        x = _level0(pos, ds)
        assert int(np.floor(x / ds)) == pos
        assert x == 0 or np.floor((x - 1) / ds) < pos  # and it is the smallest such level-0 coordinate


def test_level_arrays_read_like_numpy_arrays(generic_tiff: Path):
    with open_slide(generic_tiff) as slide:
        levels = slide_pyramid(slide)
        assert [a.shape for a in levels] == [(h, w, 3) for w, h in slide.level_dimensions]
        assert all(a.dtype == np.uint8 and a.ndim == 3 for a in levels)
        for k, level in enumerate(levels):
            w, h = slide.level_dimensions[k]
            full = slide.read_region((0, 0), k, (w, h))
            assert np.array_equal(np.asarray(level), full)
            for key in [
                (slice(10, 50), slice(33, 97)),
                (slice(None, None, 7), slice(5, None, 13)),
                (slice(90, 10, -3), slice(None)),
                (17, slice(40, 60)),
                (slice(3, 9), 11),
                (5, 6),
                (Ellipsis, 1),
                (slice(20, 20), slice(0, 5)),
                (-1, -1, slice(0, 2)),
            ]:
                got = level[key]
                assert got.shape == full[key].shape, key
                assert np.array_equal(got, full[key]), key


def test_level_arrays_refuse_what_would_not_fit(generic_tiff: Path):
    with open_slide(generic_tiff) as slide:
        level = SlideLevelArray(slide, 0, max_pixels=1000)
        with pytest.raises(ValueError, match="max_pixels"):
            np.asarray(level)
        assert level[:10, :10].shape == (10, 10, 3)  # slices still read
        with pytest.raises(IndexError):
            level[slide.dimensions[1]]
        with pytest.raises(TypeError, match="ints, slices"):
            level[[1, 2]]
        with pytest.raises(ValueError, match="level must be in"):
            SlideLevelArray(slide, slide.level_count)
