"""Tests for cytolt/synth/slide.py: each format opens with OpenSlide (or tifffile for OME) with all levels and
the right mpp, OpenSlide and tifffile decode the same level-0 pixels, the ground truth matches the label, and
the output is byte-for-byte repeatable."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import openslide
import pytest
import tifffile

from cytolt.synth import SLIDE_FORMATS, SLIDE_LABELS, cells_path_for, make_slide
from cytolt.synth.slide import level_sizes

SIZE = (2048, 1536)
SUFFIX = {"tiff": ".tiff", "aperio": ".svs", "ome": ".ome.tiff"}


@pytest.fixture(scope="module", params=SLIDE_FORMATS)
def slide(request, tmp_path_factory):
    fmt = request.param
    path = tmp_path_factory.mktemp(fmt) / f"slide{SUFFIX[fmt]}"
    return make_slide(path, size=SIZE, mpp=0.25, format=fmt, seed=5, label="HSIL")


def test_level_sizes_halve_down_to_1024():
    assert level_sizes(2048, 1536) == [(2048, 1536), (1024, 768)]
    assert level_sizes(20000, 20000)[-1] == (625, 625) and len(level_sizes(20000, 20000)) == 6
    assert level_sizes(1000, 300) == [(1000, 300)]


def test_tifffile_sees_the_pyramid_and_mpp(slide):
    with tifffile.TiffFile(slide.path) as tf:
        series = tf.series[0]
        assert [lvl.shape[:2][::-1] for lvl in series.levels] == list(slide.level_sizes)
        page = series.levels[0].keyframe
        assert page.is_tiled and page.tilewidth == 256 and page.compression == 7  # JPEG
        if slide.format == "ome":
            assert tf.is_ome and page.subifds  # levels live in SubIFDs
            pixels = ET.fromstring(tf.ome_metadata).find(".//{*}Pixels")
            assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.25)
            assert float(pixels.get("PhysicalSizeY")) == pytest.approx(0.25)
        else:
            x_res = page.tags["XResolution"].value
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(0.25)
        for p in tf.pages:
            assert "DateTime" not in p.tags


def test_openslide_opens_with_levels_and_mpp(slide):
    with openslide.OpenSlide(str(slide.path)) as osr:
        vendor = osr.properties[openslide.PROPERTY_NAME_VENDOR]
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.25)
        if slide.format == "ome":
            # OpenSlide has no OME driver: generic-tiff sees the first page only (levels sit in SubIFDs).
            assert vendor == "generic-tiff" and osr.level_dimensions == slide.level_sizes[:1]
            return
        assert osr.level_dimensions == slide.level_sizes
        if slide.format == "aperio":
            assert vendor == "aperio"
            assert osr.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "40"
            assert set(osr.associated_images) == {"thumbnail"}
        else:
            assert vendor == "generic-tiff"


def test_openslide_and_tifffile_read_the_same_pixels(slide):
    x, y, w, h = 300, 260, 900, 700  # not tile-aligned: crosses several tiles
    levels = 1 if slide.format == "ome" else 2
    with tifffile.TiffFile(slide.path) as tf:
        ref = [
            tf.series[0].levels[0].asarray()[y : y + h, x : x + w],
            tf.series[0].levels[1].asarray()[: h // 2, : w // 2],
        ]
    with openslide.OpenSlide(str(slide.path)) as osr:
        got = [
            np.asarray(osr.read_region((x, y), 0, (w, h))),
            np.asarray(osr.read_region((0, 0), 1, (w // 2, h // 2))) if levels > 1 else None,
        ]
    for k in range(levels):
        assert (got[k][..., 3] == 255).all()
        np.testing.assert_array_equal(got[k][..., :3], ref[k])
    assert ref[0].std() > 5  # cells, not blank glass


def test_ground_truth_matches_label_and_lies_inside(slide):
    data = json.loads(cells_path_for(slide.path).read_text())
    assert data["label"] == "HSIL" and data["mpp"] == 0.25 and (data["width"], data["height"]) == SIZE
    assert data["levels"] == [list(s) for s in slide.level_sizes]
    assert len(data["cells"]) == len(slide.cells)
    for cell in data["cells"]:
        x0, y0, x1, y1 = cell["box"]
        assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]
    counts = slide.counts()
    assert counts == data["counts"]
    for name, (lo, hi) in SLIDE_LABELS["HSIL"].items():
        assert lo <= counts[name] <= hi, name
    assert counts["scc"] == counts["agc"] == 0  # not part of an HSIL slide
    assert counts["intermediate"] > 0


def test_nilm_slide_has_no_abnormal_cells(tmp_path):
    truth = make_slide(tmp_path / "nilm.tiff", size=(1024, 1024), label="NILM", seed=2)
    counts = truth.counts()
    assert all(counts[n] == 0 for n in ("ascus", "lsil", "hsil", "scc", "agc"))
    assert truth.cells_path.name == "nilm.tiff.cells.json"


def test_same_seed_same_bytes(tmp_path):
    kw = dict(size=(640, 512), format="aperio", seed=9, label="LSIL")
    a = make_slide(tmp_path / "a.svs", **kw)
    b = make_slide(tmp_path / "b.svs", **kw)
    c = make_slide(tmp_path / "c.svs", **{**kw, "seed": 10})
    assert a.path.read_bytes() == b.path.read_bytes()
    # The cells file names its slide; everything else is identical.
    ja, jb = json.loads(a.cells_path.read_text()), json.loads(b.cells_path.read_text())
    assert ja.pop("slide") == "a.svs" and jb.pop("slide") == "b.svs" and ja == jb
    assert a.path.read_bytes() != c.path.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(format="ndpi"), "tiff, aperio, ome"),
        (dict(label="CIN3"), "NILM, ASC-US"),
        (dict(tile=300), "multiple of 16"),
        (dict(size=(32, 512)), "at least 64"),
        (dict(mpp=0.0), "mpp"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, kwargs, message):
    args = dict(size=(256, 256)) | kwargs
    with pytest.raises(ValueError, match=message):
        make_slide(tmp_path / "x.tiff", **args)
