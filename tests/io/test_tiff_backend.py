"""tifffile backend on generated pyramids of each layout, cross-checked against OpenSlide."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cytolt.io import SlideError, open_slide
from cytolt.io.tiff_backend import TiffSlide

# Sizes of the generated slides (tests/io/conftest.py).
WIDTH, HEIGHT, TILE = 700, 530, 128


@pytest.mark.parametrize(
    ("layout", "levels", "mpp", "vendor"),
    [("generic", 3, 0.5, "generic-tiff"), ("aperio", 3, 0.25, "aperio"), ("ome", 3, 0.5, "ome-tiff")],
)
def test_layout_metadata(
    generated: dict[str, Path], layout: str, levels: int, mpp: float, vendor: str
) -> None:
    with open_slide(generated[layout], backend="tifffile") as slide:
        assert slide.dimensions == (WIDTH, HEIGHT)
        assert slide.level_count == levels
        assert slide.level_dimensions[1] == (WIDTH // 2, HEIGHT // 2)
        assert slide.mpp == pytest.approx((mpp, mpp))
        assert slide.vendor == vendor


def test_aperio_associated_images_match_openslide(aperio_svs: Path) -> None:
    with (
        open_slide(aperio_svs, backend="tifffile") as tiff,
        open_slide(aperio_svs, backend="openslide") as osl,
    ):
        assert set(tiff.associated_images) == set(osl.associated_images) == {"thumbnail", "label", "macro"}
        assert tiff.level_downsamples == pytest.approx(osl.level_downsamples)
        label = tiff.read_associated("label")
        assert label.shape == (60, 80, 3) and (label == 200).all()
        np.testing.assert_array_equal(label, osl.read_associated("label"))
        assert tiff.properties["aperio.AppMag"] == "40"


def _regions(slide) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
    """Regions at every level, inside and across tile and slide edges, where both backends read whole
    level pixels: level-0 positions that are multiples of an integer downsample. (Level 2 here has
    downsample 4.0076, from 530 / 132; OpenSlide blends neighbours at its fractional positions.)"""
    out = []
    for level, ds in enumerate(slide.level_downsamples):
        lw, lh = slide.level_dimensions[level]
        regions = [(0, 0, lw, lh), (0, 0, 50, 40)]
        if ds == int(ds):
            regions += [(3, 5, 50, 40), (TILE - 7, TILE - 9, 20, 30), (lw - 30, lh - 20, 64, 64)]
        out += [((lx * int(ds), ly * int(ds)), level, (w, h)) for lx, ly, w, h in regions]
    return out


@pytest.mark.parametrize("layout", ["generic", "aperio"])
def test_pixels_equal_openslide_at_every_level(generated: dict[str, Path], layout: str) -> None:
    with (
        open_slide(generated[layout], backend="tifffile") as tiff,
        open_slide(generated[layout], backend="openslide") as osl,
    ):
        assert osl.level_count == tiff.level_count
        for location, level, size in _regions(tiff):
            np.testing.assert_array_equal(
                tiff.read_region(location, level, size),
                osl.read_region(location, level, size),
                err_msg=f"{layout} {location} level {level} {size}",
            )


def test_ome_subifd_pyramid_seen_only_by_tifffile(ome_tiff: Path) -> None:
    with open_slide(ome_tiff, backend="tifffile") as tiff, open_slide(ome_tiff, backend="openslide") as osl:
        assert tiff.level_count == 3
        assert osl.level_count == 1  # OpenSlide does not see SubIFD levels
        for location, level, size in _regions(tiff):
            if level == 0:
                np.testing.assert_array_equal(
                    tiff.read_region(location, 0, size), osl.read_region(location, 0, size)
                )


@pytest.mark.parametrize("layout", ["generic", "aperio", "ome"])
def test_direct_decode_equals_zarr_slicing(generated: dict[str, Path], layout: str) -> None:
    rng = np.random.default_rng(1)
    with TiffSlide(generated[layout]) as direct, TiffSlide(generated[layout], direct=False) as sliced:
        assert direct._levels[0].direct and not sliced._levels[0].direct
        for level in range(direct.level_count):
            ds = round(direct.level_downsamples[level])
            for _ in range(6):
                x, y = (int(v) * ds for v in rng.integers(-40, 600 // ds, 2))
                w, h = (int(v) for v in rng.integers(1, 300, 2))
                try:
                    expected = sliced.read_region((x, y), level, (w, h))
                except SlideError:
                    with pytest.raises(SlideError, match="outside"):
                        direct.read_region((x, y), level, (w, h))
                    continue
                np.testing.assert_array_equal(direct.read_region((x, y), level, (w, h)), expected)


def test_whole_tile_read_is_exact_tile(generic_tiff: Path, slide_image: np.ndarray) -> None:
    with open_slide(generic_tiff, backend="tifffile") as slide:
        tile = slide.read_region((TILE, TILE), 0, (TILE, TILE))
        again = slide.read_region((TILE, TILE), 0, (TILE, TILE))
        assert tile.shape == (TILE, TILE, 3) and tile is not again
        tile[:] = 0  # the caller owns the array: the next read is unaffected
        assert slide.read_region((TILE, TILE), 0, (TILE, TILE)).max() > 0


@pytest.mark.parametrize("unit", ["CENTIMETER", "INCH"])
def test_mpp_from_resolution_tags(tmp_path: Path, unit: str) -> None:
    per_unit = {"CENTIMETER": 1e4, "INCH": 25400.0}[unit]
    path = tmp_path / "res.tiff"
    tifffile.imwrite(
        path,
        np.zeros((64, 64, 3), np.uint8),
        photometric="rgb",
        metadata=None,
        resolution=(per_unit / 0.25, per_unit / 0.5),
        resolutionunit=unit,
    )
    with open_slide(path, backend="tifffile") as slide:
        assert slide.mpp == pytest.approx((0.25, 0.5))


def test_stripped_grayscale_and_rgba(tmp_path: Path) -> None:
    gray = np.arange(40 * 50, dtype=np.uint32).reshape(40, 50).astype(np.uint8)
    tifffile.imwrite(tmp_path / "gray.tiff", gray, metadata=None)  # strips: read through zarr
    with open_slide(tmp_path / "gray.tiff") as slide:
        assert slide.backend == "tifffile"
        np.testing.assert_array_equal(
            slide.read_region((0, 0), 0, (50, 40)), np.repeat(gray[..., None], 3, 2)
        )
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red, bottom half transparent
    tifffile.imwrite(
        tmp_path / "rgba.tiff",
        rgba,
        photometric="rgb",
        extrasamples=["unassalpha"],
        tile=(16, 16),
        metadata=None,
    )
    with open_slide(tmp_path / "rgba.tiff") as slide:
        region = slide.read_region((0, 0), 0, (32, 32))
        assert (region[:16] == (200, 0, 0)).all() and (region[16:] == 255).all()


def test_sparse_tiles_read_white(tmp_path: Path) -> None:
    import imagecodecs

    grey = imagecodecs.jpeg8_encode(np.full((TILE, TILE, 3), 90, np.uint8), level=95)
    path = tmp_path / "sparse.tiff"
    tiles = (b"" if i % 2 else grey for i in range(4))  # tiles 1 and 3 never written
    tifffile.imwrite(
        path,
        tiles,
        shape=(2 * TILE, 2 * TILE, 3),
        dtype="uint8",
        tile=(TILE, TILE),
        compression="jpeg",
        photometric="rgb",
        metadata=None,
    )
    for direct in (True, False):
        with TiffSlide(path, direct=direct) as slide:
            region = slide.read_region((0, 0), 0, (2 * TILE, 2 * TILE))
            assert (region[:TILE, TILE:] == 255).all()
            assert np.abs(region[:TILE, :TILE].astype(int) - 90).max() <= 2


def test_uint16_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "u16.tiff", np.zeros((16, 16, 3), np.uint16), photometric="rgb")
    with pytest.raises(SlideError, match="uint16"):
        TiffSlide(tmp_path / "u16.tiff")


def test_unsupported_compression_raises_at_open(openslide_fixtures: Path) -> None:
    path = openslide_fixtures / "unopenable.tiff"
    with pytest.raises(SlideError, match="compression 52479") as info:
        open_slide(path, backend="tifffile")
    assert str(path) in str(info.value)


def test_unreadable_svs_raises_at_read(openslide_fixtures: Path) -> None:
    path = openslide_fixtures / "unreadable.svs"
    with (
        open_slide(path, backend="tifffile") as slide,
        pytest.raises(SlideError, match="corrupt tile data") as info,
    ):
        slide.read_region((0, 0), 0, (16, 16))
    assert str(path) in str(info.value) and info.value.__cause__ is not None


def test_small_svs_pixels_equal_openslide(openslide_fixtures: Path) -> None:
    """A real Aperio file (JPEG tiles with JPEGTables): tifffile decodes what OpenSlide decodes."""
    path = openslide_fixtures / "small.svs"
    with open_slide(path, backend="tifffile") as tiff, open_slide(path, backend="openslide") as osl:
        assert tiff.mpp == pytest.approx(osl.mpp)
        np.testing.assert_array_equal(
            tiff.read_region((0, 0), 0, (16, 16)), osl.read_region((0, 0), 0, (16, 16))
        )


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.97])
@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_truncated_copy_raises_slide_error(
    tmp_path: Path, generic_tiff: Path, fraction: float, backend: str
) -> None:
    data = generic_tiff.read_bytes()
    path = tmp_path / "truncated.tiff"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideError) as info:
        with open_slide(path, backend=backend) as slide:
            for level in range(slide.level_count):
                slide.read_region((0, 0), level, slide.level_dimensions[level])
    assert str(path) in str(info.value)


def test_corrupt_tile_raises_and_other_tiles_still_read(tmp_path: Path, synth) -> None:
    path = synth.write_generic(tmp_path / "corrupt.tiff", synth.cells_image(256, 256, seed=3), levels=1)
    shutil.copy(path, tmp_path / "good.tiff")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[1]
    with open(path, "r+b") as fh:  # overwrite tile 1's JPEG start-of-image marker
        fh.seek(offset)
        fh.write(b"\x00" * 16)
    for backend in ("tifffile", "openslide"):
        with open_slide(path, backend=backend) as slide:
            with pytest.raises(SlideError) as info:
                slide.read_region((TILE, 0), 0, (TILE, TILE))
            assert str(path) in str(info.value)
    with open_slide(path, backend="tifffile") as slide, open_slide(tmp_path / "good.tiff") as good:
        assert "level 0 tile (1, 0)" in str(_raises(slide, (TILE, 0)))
        np.testing.assert_array_equal(
            slide.read_region((0, TILE), 0, (TILE, TILE)), good.read_region((0, TILE), 0, (TILE, TILE))
        )


def _raises(slide, location) -> SlideError:
    with pytest.raises(SlideError) as info:
        slide.read_region(location, 0, (TILE, TILE))
    return info.value


def test_sizes_match_the_generated_slides(synth) -> None:
    assert (synth.WIDTH, synth.HEIGHT, synth.TILE) == (WIDTH, HEIGHT, TILE)
