"""OpenSlide backend against the real files from the openslide-python test-suite."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cytolt.io import SlideError, open_slide


def test_boxes_tiff_levels_and_pixels(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes.tiff", backend="openslide") as slide:
        assert slide.level_count == 4
        assert slide.dimensions == (300, 250)
        assert slide.level_dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
        assert slide.level_downsamples[:2] == (1.0, 2.0)
        assert slide.vendor == "generic-tiff"
        level0 = slide.read_region((0, 0), 0, slide.dimensions)
    png = cv2.cvtColor(cv2.imread(str(openslide_fixtures / "boxes.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    # boxes.png is level 0 saved losslessly; the TIFF tiles are JPEG.
    assert np.abs(level0.astype(int) - png).mean() < 3


def test_small_svs_is_aperio_with_mpp_and_thumbnail(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "small.svs", backend="openslide") as slide:
        assert slide.vendor == "aperio"
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.dimensions == (16, 16)
        assert "thumbnail" in slide.associated_images
        thumb = slide.read_associated("thumbnail")
        assert thumb.ndim == 3 and thumb.shape[2] == 3 and thumb.dtype == np.uint8
        with pytest.raises(SlideError, match="no associated image 'label'"):
            slide.read_associated("label")


def test_dicom_opens(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes_0.dcm", backend="openslide") as slide:
        region = slide.read_region((0, 0), 0, (16, 16))
        assert region.shape == (16, 16, 3)
        assert slide.mpp is not None


def test_unopenable_tiff_raises_at_open(openslide_fixtures: Path) -> None:
    path = openslide_fixtures / "unopenable.tiff"
    with pytest.raises(SlideError) as info:
        open_slide(path, backend="openslide")
    assert str(path) in str(info.value) and "compression" in str(info.value)
    assert info.value.__cause__ is not None  # the OpenSlide error is chained, not leaked


def test_unreadable_svs_raises_at_read_and_keeps_raising(openslide_fixtures: Path) -> None:
    path = openslide_fixtures / "unreadable.svs"
    with open_slide(path, backend="openslide") as slide:
        for _ in range(2):  # OpenSlide puts the handle in an error state; still a SlideError
            with pytest.raises(SlideError) as info:
                slide.read_region((0, 0), 0, (16, 16))
            assert str(path) in str(info.value)


def test_transparent_outside_becomes_white(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes.tiff", backend="openslide") as slide:
        region = slide.read_region((290, 240), 0, (20, 20))
        assert (region[10:] == 255).all() and (region[:, 10:] == 255).all()
