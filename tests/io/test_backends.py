"""backend="auto": tifffile wherever it reads a file exactly as OpenSlide does, OpenSlide everywhere else.

Exactness is checked on every tile of every level (tile-aligned reads, where both backends read whole level
pixels), on the generated pyramids, on SVS files in each compression, on slides from ``cytolt.synth`` and on
the real files of the openslide-python test-suite. The bound is 0: on all of them tifffile + imagecodecs and
OpenSlide decode the same bytes to the same pixels (JPEG through libjpeg-turbo, JPEG 2000 through OpenJPEG, in
both), so no decoder-rounding tolerance is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from cytolt.io import backends, open_slide
from cytolt.io.backends import choose_backend, decoders_differ, explain_backend
from cytolt.io.openslide_backend import OpenSlideSlide
from cytolt.io.slide import Slide
from cytolt.io.tiff_backend import TiffSlide
from cytolt.synth import make_slide

# Largest difference allowed between tifffile's and OpenSlide's pixels on a file "auto" gives tifffile.
MAX_ABS_DIFFERENCE = 0


def _rgb_jpeg(tile: np.ndarray) -> bytes:
    """JPEG of RGB samples with no colour transform (Adobe marker), as some Aperio encoders write."""
    return imagecodecs.jpeg8_encode(tile, level=90, colorspace="RGB", outcolorspace="RGB")


def _jpeg2000(tile: np.ndarray) -> bytes:
    return imagecodecs.jpeg2k_encode(tile, level=80, codecformat="j2k")


# name -> write_svs arguments; each file is 700x530 with 128-px tiles, partial at the right and bottom edges.
SVS_EXACT = {
    "jpeg_ycbcr420": {},
    "jpeg_ycbcr444": {"compressionargs": {"level": 90, "subsampling": (1, 1)}},
    "jpeg_rgb": {"compressionargs": {"level": 90, "outcolorspace": "RGB"}},
    "jpeg_q50": {"compressionargs": {"level": 50}},
    "lzw": {"compression": "lzw"},
    "deflate": {"compression": "zlib"},
    "raw": {"compression": None},
    "jpeg2000_rgb": {"compression": 33005, "encode": _jpeg2000},
}
SVS_OPENSLIDE = {
    # OpenSlide paints a zero-length tile from the finer level and marks the coarser tiles over it missing.
    "missing_tiles": ({"missing": (3, 7)}, "missing"),
    # Aperio's YCbCr JPEG 2000: OpenSlide converts the colours itself.
    "jpeg2000_ycbcr": ({"compression": 33003, "encode": _jpeg2000}, "33003"),
    # RGB JPEG data under a YCbCr Photometric tag: the two readers disagree on the colours (found by the probe).
    "jpeg_contradicts_tag": ({"compression": "jpeg", "encode": _rgb_jpeg}, "differs"),
}


@pytest.fixture(scope="module")
def svs_files(tmp_path_factory: pytest.TempPathFactory, synth) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("svs")
    image = synth.cells_image(synth.WIDTH, synth.HEIGHT, seed=5)
    specs = SVS_EXACT | {name: spec for name, (spec, _) in SVS_OPENSLIDE.items()}
    return {name: synth.write_svs(folder / f"{name}.svs", image, **spec) for name, spec in specs.items()}


@pytest.fixture(scope="module")
def synth_slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cytolt.synth slides, 3000x2100 with 256-px tiles: the screening path's own inputs."""
    folder = tmp_path_factory.mktemp("synth")
    out = {}
    for fmt, suffix in (("aperio", ".svs"), ("tiff", ".tiff")):
        out[fmt] = make_slide(folder / f"slide{suffix}", size=(3000, 2100), format=fmt, seed=3).path
    return out


def _tile_regions(slide: Slide, tile: int) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
    """Every tile-aligned (tile x tile) region of every level with an integer downsample, edges included."""
    out = []
    for level, ds in enumerate(slide.level_downsamples):
        if ds != int(ds):
            continue  # OpenSlide blends neighbours at fractional level positions: not comparable
        lw, lh = slide.level_dimensions[level]
        for y in range(0, lh, tile):
            for x in range(0, lw, tile):
                out.append(((x * int(ds), y * int(ds)), level, (tile, tile)))
    return out


def _max_difference(path: Path, tile: int) -> tuple[int, int]:
    """(tiles compared, largest absolute pixel difference) between tifffile and OpenSlide on every tile."""
    with TiffSlide(path) as tiff, OpenSlideSlide(path) as osl:
        assert tiff.level_dimensions == osl.level_dimensions
        assert tiff.level_downsamples == pytest.approx(osl.level_downsamples)
        regions = _tile_regions(tiff, tile)
        worst = 0
        for location, level, size in regions:
            a = tiff.read_region(location, level, size)
            b = osl.read_region(location, level, size)
            worst = max(worst, int(np.abs(a.astype(np.int16) - b).max()))
    return len(regions), worst


@pytest.mark.parametrize("name", SVS_EXACT)
def test_svs_in_each_exact_compression_goes_to_tifffile_and_matches_every_tile(
    svs_files: dict[str, Path], name: str
) -> None:
    choice = explain_backend(svs_files[name])
    assert choice.backend == "tifffile", choice.reason
    tiles, worst = _max_difference(svs_files[name], 128)
    assert tiles == 6 * 5 + 3 * 3  # levels 0 and 1; level 2 (downsample 4.0076) is not tile-comparable
    assert worst <= MAX_ABS_DIFFERENCE
    with open_slide(svs_files[name]) as slide:
        assert slide.backend == "tifffile" and slide.vendor == "aperio"
        assert slide.associated_images == ("thumbnail",)


@pytest.mark.parametrize("name", SVS_OPENSLIDE)
def test_svs_tifffile_would_misread_goes_to_openslide(svs_files: dict[str, Path], name: str) -> None:
    choice = explain_backend(svs_files[name])
    assert choice.backend == "openslide"
    assert SVS_OPENSLIDE[name][1] in choice.reason
    with open_slide(svs_files[name]) as slide:
        assert slide.backend == "openslide"


def test_the_fallbacks_are_real_differences(svs_files: dict[str, Path]) -> None:
    """Forced, tifffile does read these two differently: the fallback is not mere caution."""
    assert _max_difference(svs_files["missing_tiles"], 128)[1] > 50
    assert decoders_differ(svs_files["jpeg_contradicts_tag"]) is not None
    assert decoders_differ(svs_files["jpeg_ycbcr420"]) is None


@pytest.mark.parametrize("fmt", ["aperio", "tiff"])
def test_synthetic_slides_read_exactly_by_the_default(synth_slides: dict[str, Path], fmt: str) -> None:
    path = synth_slides[fmt]
    assert choose_backend(path) == "tifffile"
    tiles, worst = _max_difference(path, 256)
    assert tiles == 12 * 9 + 6 * 5 + 3 * 3  # levels 3000, 1500 and 750 px wide
    assert worst <= MAX_ABS_DIFFERENCE


@pytest.mark.parametrize("layout", ["generic", "aperio"])
def test_generated_pyramids_read_exactly_by_the_default(generated: dict[str, Path], layout: str) -> None:
    assert choose_backend(generated[layout]) == "tifffile"
    assert _max_difference(generated[layout], 128)[1] <= MAX_ABS_DIFFERENCE


def test_ome_subifd_pyramid_goes_to_tifffile(generated: dict[str, Path]) -> None:
    # OpenSlide sees only level 0 of it; the probe compares that level and the choice keeps all three.
    choice = explain_backend(generated["ome"])
    assert choice.backend == "tifffile", choice.reason
    with open_slide(generated["ome"]) as slide:
        assert slide.level_count == 3


@pytest.mark.parametrize(
    ("name", "backend", "why"),
    [
        ("small.svs", "tifffile", "same pixels"),  # a real Aperio crop, RGB JPEG with JPEGTables
        ("boxes.tiff", "tifffile", "same pixels"),
        ("boxes_0.dcm", "openslide", "not a TIFF"),
        ("unopenable.tiff", "openslide", "52479"),
        ("unreadable.svs", "openslide", "unreadable"),  # corrupt JPEG: OpenSlide's error messages kept
    ],
)
def test_real_files(openslide_fixtures: Path, name: str, backend: str, why: str) -> None:
    choice = explain_backend(openslide_fixtures / name)
    assert choice.backend == backend and why in choice.reason


@pytest.mark.parametrize("name", ["small.svs", "boxes.tiff"])
def test_real_files_match_every_tile(openslide_fixtures: Path, name: str) -> None:
    assert _max_difference(openslide_fixtures / name, 16)[1] <= MAX_ABS_DIFFERENCE


def test_choice_is_remembered_until_the_file_changes(
    tmp_path: Path, svs_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "slide.svs"
    path.write_bytes(svs_files["jpeg_ycbcr420"].read_bytes())
    probes: list[Path] = []
    original = backends.explain_backend

    def counting(p: Path) -> backends.BackendChoice:
        probes.append(p)
        return original(p)

    monkeypatch.setattr(backends, "explain_backend", counting)
    assert [choose_backend(path) for _ in range(3)] == ["tifffile"] * 3
    assert len(probes) == 1
    path.write_bytes(svs_files["missing_tiles"].read_bytes())
    os.utime(path, ns=(1, 1))  # a new version of the file, whatever the clock's resolution
    assert choose_backend(path) == "openslide" and len(probes) == 2


def test_missing_file_is_a_slide_error(tmp_path: Path) -> None:
    with pytest.raises(backends.SlideError, match="cannot read the file"):
        choose_backend(tmp_path / "absent.svs")
