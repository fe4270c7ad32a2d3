"""open_slide and the behaviour the Slide base class gives every backend."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

import cytolt.io.slide as slide_module
from cytolt.io import SlideError, open_slide, open_spec
from cytolt.io.openslide_backend import OpenSlideSlide
from cytolt.io.slide import SlideSpec, parse_mpp, rgba_on_white
from cytolt.io.tiff_backend import TiffSlide

BACKENDS = ("openslide", "tifffile")


def test_unknown_backend_lists_the_choices(generic_tiff: Path) -> None:
    with pytest.raises(ValueError, match=r"'auto', 'openslide', 'tifffile'; got 'pil'"):
        open_slide(generic_tiff, backend="pil")


@pytest.mark.parametrize("layout", ["generic", "ome", "aperio"])
def test_auto_backend_by_layout(generated: dict[str, Path], layout: str) -> None:
    # tifffile reads all three as OpenSlide does (tests/io/test_backends.py has the exceptions)
    with open_slide(generated[layout]) as slide:
        assert slide.backend == "tifffile"


def test_each_backend_says_which_files_it_reads(
    generated: dict[str, Path], openslide_fixtures: Path, tmp_path: Path
) -> None:
    for layout in ("generic", "ome", "aperio"):
        assert TiffSlide.can_read(generated[layout])
    assert OpenSlideSlide.can_read(generated["aperio"])
    assert OpenSlideSlide.can_read(openslide_fixtures / "boxes_0.dcm")
    assert not TiffSlide.can_read(openslide_fixtures / "boxes_0.dcm")
    junk = tmp_path / "notes.tiff"
    junk.write_text("not a slide")
    for backend in (TiffSlide, OpenSlideSlide):
        assert not backend.can_read(junk) and not backend.can_read(tmp_path / "absent.tiff")
    # No backend claims it: "auto" hands it to OpenSlide, the last in line, whose error says why.
    with pytest.raises(SlideError, match="not a slide format OpenSlide recognises"):
        open_slide(junk)


def test_auto_sends_dicom_to_openslide(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes_0.dcm") as slide:
        assert slide.backend == "openslide"
        assert slide.vendor == "dicom"


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.svs"
    for backend in ("auto", *BACKENDS):
        with pytest.raises(SlideError, match="not found") as info:
            open_slide(path, backend=backend)
        assert str(path) in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="directory"):
        open_slide(tmp_path)


@pytest.mark.parametrize(("suffix", "vendor"), [(".kfb", "KFB"), (".sdpc", "SDPC"), (".tmap", "TMAP")])
def test_vendor_formats_are_unsupported_with_a_clear_message(
    tmp_path: Path, suffix: str, vendor: str
) -> None:
    path = tmp_path / f"case{suffix}"
    path.write_bytes(b"\x00" * 64)
    for backend in ("auto", *BACKENDS):
        with pytest.raises(SlideError) as info:
            open_slide(path, backend=backend)
        message = str(info.value)
        assert str(path) in message and vendor in message and "not supported" in message


def test_renamed_kfb_is_recognised_by_its_tag(tmp_path: Path) -> None:
    path = tmp_path / "slide.bin"
    path.write_bytes(b"\xf1\x01\xee\xeeKFB\x00" + b"\x00" * 56)
    with pytest.raises(SlideError, match="KFB"):
        open_slide(path)


def test_parse_mpp() -> None:
    assert parse_mpp(None) is None
    assert parse_mpp(0.25) == (0.25, 0.25)
    assert parse_mpp((0.25, 0.5)) == (0.25, 0.5)
    for bad in (0, -1.0, float("nan"), (0.1, 0.2, 0.3), (0.1, float("inf"))):
        with pytest.raises(ValueError):
            parse_mpp(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mpp_argument_overrides_the_file(generic_tiff: Path, backend: str) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        assert slide.mpp == pytest.approx((0.5, 0.5))
    with open_slide(generic_tiff, backend=backend, mpp=(0.3, 0.31)) as slide:
        assert slide.mpp == (0.3, 0.31)
    with pytest.raises(ValueError):
        open_slide(generic_tiff, backend=backend, mpp=-1)


def test_mpp_supplied_when_the_file_has_none(tmp_path: Path, slide_image: np.ndarray) -> None:
    path = tmp_path / "nompp.tiff"
    tifffile.imwrite(path, slide_image, tile=(128, 128), compression="zlib", photometric="rgb", metadata=None)
    with open_slide(path) as slide:
        assert slide.mpp is None
        with pytest.raises(SlideError, match="mpp="):
            slide.read_at_mpp((0, 0), 1.0, (10, 10))
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)
        assert slide.read_at_mpp((0, 0), 1.0, (10, 10)).shape == (10, 10, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_region_returns_rgb_uint8(generic_tiff: Path, backend: str, slide_image: np.ndarray) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        region = slide.read_region((100, 50), 0, (64, 48))
        assert region.shape == (48, 64, 3) and region.dtype == np.uint8
        # JPEG is lossy, but not by this much: the region shows the right part of the image.
        diff = np.abs(region.astype(int) - slide_image[50:98, 100:164]).mean()
        assert diff < 4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("location", "level", "size"),
    [((700, 0), 0, (10, 10)), ((0, 530), 0, (10, 10)), ((-10, -10), 0, (10, 10)), ((-50, 0), 1, (25, 10))],
)
def test_region_entirely_outside_raises(generic_tiff: Path, backend: str, location, level, size) -> None:
    with open_slide(generic_tiff, backend=backend) as slide, pytest.raises(SlideError, match="outside"):
        slide.read_region(location, level, size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_size_and_level_raise(generic_tiff: Path, backend: str) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        for size in ((0, 10), (10, -1)):
            with pytest.raises(SlideError, match="positive"):
                slide.read_region((0, 0), 0, size)
        with pytest.raises(SlideError, match="level 3 does not exist"):
            slide.read_region((0, 0), 3, (10, 10))
        with pytest.raises(SlideError, match="larger than"):
            slide.read_region((0, 0), 0, (1 << 15, 1 << 14))


@pytest.mark.parametrize("backend", BACKENDS)
def test_partly_outside_is_padded_white(generic_tiff: Path, backend: str) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        # 20 px left of and 10 px above the slide; 30 px past the right edge at the other corner.
        region = slide.read_region((-20, -10), 0, (60, 40))
        inside = slide.read_region((0, 0), 0, (40, 30))
        assert (region[:10] == 255).all() and (region[:, :20] == 255).all()
        np.testing.assert_array_equal(region[10:, 20:], inside)
        corner = slide.read_region((670, 500), 0, (60, 60))
        assert (corner[30:] == 255).all() and (corner[:, 30:] == 255).all()
        assert not (corner[:30, :30] == 255).all()


def test_read_at_mpp_uses_the_nearest_finer_level(generic_tiff: Path) -> None:
    with open_slide(generic_tiff, backend="tifffile") as slide:  # 0.5 µm/px, levels 1, 2, 4
        # 1.0 µm/px is level 1 exactly: no resampling.
        np.testing.assert_array_equal(
            slide.read_at_mpp((64, 32), 1.0, (100, 80)), slide.read_region((64, 32), 1, (100, 80))
        )
        # 1.5 µm/px: level 1 (2x) read at 150x120, shrunk with INTER_AREA.
        expected = cv2.resize(
            slide.read_region((64, 32), 1, (150, 120)), (100, 80), interpolation=cv2.INTER_AREA
        )
        np.testing.assert_array_equal(slide.read_at_mpp((64, 32), 1.5, (100, 80)), expected)
        # Finer than level 0: enlarged.
        assert slide.read_at_mpp((64, 32), 0.25, (100, 80)).shape == (80, 100, 3)
        assert slide.level0_size_at_mpp(1.5, (100, 80)) == (300, 240)
        with pytest.raises(SlideError, match="positive"):
            slide.read_at_mpp((64, 32), 1.5, (0, 80))


def test_best_level_for_downsample(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes.tiff") as slide:  # downsamples 1, 2, 4.016, 8.086
        assert slide.best_level_for_downsample(0.5) == 0
        assert slide.best_level_for_downsample(3.9) == 1
        assert slide.best_level_for_downsample(4.0) == 2  # 4.016 is within 1%
        assert slide.best_level_for_downsample(1000) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_thumbnail_fits_keeps_aspect_and_never_enlarges(generic_tiff: Path, backend: str) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        thumb = slide.thumbnail(100)
        assert thumb.shape == (round(530 * 100 / 700), 100, 3)
        assert slide.thumbnail((1000, 50)).shape == (50, round(700 * 50 / 530), 3)
        assert slide.thumbnail(5000).shape == (530, 700, 3)


def test_chunked_thumbnail_matches_one_read(generic_tiff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_slide(generic_tiff) as slide:
        whole = slide.thumbnail(200)
        monkeypatch.setattr(slide_module, "_THUMBNAIL_CHUNK", 64)
        chunked = slide.thumbnail(200)
    assert chunked.shape == whole.shape
    assert np.abs(chunked.astype(int) - whole).mean() < 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_slide_refuses_reads(generic_tiff: Path, backend: str) -> None:
    with open_slide(generic_tiff, backend=backend) as slide:
        pass
    with pytest.raises(SlideError, match="closed"):
        slide.read_region((0, 0), 0, (4, 4))
    slide.close()  # twice is fine


def test_spec_reopens_the_same_slide(generic_tiff: Path) -> None:
    with open_slide(generic_tiff, mpp=0.4) as slide:
        spec = pickle.loads(pickle.dumps(slide.spec))
        assert spec == SlideSpec(str(generic_tiff), "tifffile", (0.4, 0.4))
        with open_spec(spec) as again:
            assert again.mpp == (0.4, 0.4)
            np.testing.assert_array_equal(
                again.read_region((5, 5), 0, (9, 9)), slide.read_region((5, 5), 0, (9, 9))
            )


def test_rgba_on_white() -> None:
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128]]], np.uint8)
    out = rgba_on_white(rgba)
    # opaque keeps its colour, transparent becomes white, half-transparent black is mid-grey:
    # 0 * 128 / 255 + 255 * 127 / 255 = 127
    np.testing.assert_array_equal(out, [[[10, 20, 30], [255, 255, 255], [127, 127, 127]]])
