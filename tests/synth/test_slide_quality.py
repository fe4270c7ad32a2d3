"""Tests for the specimen-quality options of cytolt/synth/slide.py (blur, density, abnormal): blurred regions
are out of focus at level 0 and level 1 and nowhere else, the ground truth records them and marks their
cells, density 0 is blank glass, abnormal counts are exact, and old arguments draw the old slide."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import tifffile

from cytolt.io import open_slide, tissue_mask
from cytolt.synth import CLASSES, make_slide
from cytolt.synth.classes import ABNORMAL_CLASSES, SQUAMOUS_CLASSES
from cytolt.synth.slide import BLUR_SIGMA_UM

SIZE = 2048  # two levels; the right half starts at a tile and block edge


def _levels(path):
    with tifffile.TiffFile(path) as tf:
        return [level.asarray() for level in tf.series[0].levels]


def _tiles(path, level=0):
    """Raw JPEG bytes of every tile of a level, row-major."""
    with tifffile.TiffFile(path) as tf:
        page = tf.series[0].levels[level].keyframe
        fh = tf.filehandle
        out = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            fh.seek(offset)
            out.append(fh.read(count))
        return out, page.tilewidth


def _focus(image, tile, smooth):
    """Median variance of the Laplacian over the tiles of ``image`` that hold cells (grey std > 8); ``smooth``
    a Gaussian sigma (px) applied first to take off the sensor noise, 0 for none."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if smooth:
        grey = cv2.GaussianBlur(grey, (0, 0), smooth)
    values = []
    for y in range(0, grey.shape[0] - tile + 1, tile):
        for x in range(0, grey.shape[1] - tile + 1, tile):
            t = grey[y : y + tile, x : x + tile]
            if t.std() > 8:
                values.append(cv2.Laplacian(t, cv2.CV_32F).var())
    assert len(values) >= 4, "too few tiles with cells to compare"
    return float(np.median(values))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same slide in focus and with its right half blurred."""
    tmp = tmp_path_factory.mktemp("blur")
    kw = dict(size=(SIZE, SIZE), seed=4, label="LSIL")
    return make_slide(tmp / "sharp.tiff", **kw), make_slide(tmp / "half.tiff", blur="half", **kw)


def test_half_blur_is_out_of_focus_at_level_0_and_level_1(pair):
    _, half = pair
    levels = _levels(half.path)
    assert len(levels) == 2
    for k, (image, tile) in enumerate(zip(levels, (256, 128), strict=True)):
        w = image.shape[1] // 2
        # Level 0 (0.25 um/px) carries sensor noise of ~1.8 grey levels that a defocus leaves untouched (it
        # is the camera's); a 1-px Gaussian takes it off. Level 1 averages it away by itself.
        smooth = 1.0 if k == 0 else 0.0
        sharp, blurred = _focus(image[:, :w], tile, smooth), _focus(image[:, w:], tile, smooth)
        assert blurred < sharp / 4, (k, sharp, blurred)
    # Raw Laplacian at level 1, no smoothing: an order of magnitude apart (measured ~12x).
    w = levels[1].shape[1] // 2
    assert _focus(levels[1][:, w:], 128, 0) < _focus(levels[1][:, :w], 128, 0) / 5


def test_blur_changes_nothing_outside_its_region(pair):
    sharp, half = pair
    assert [(c.box, c.label) for c in sharp.cells] == [(c.box, c.label) for c in half.cells]
    a, tile = _tiles(sharp.path)
    b, _ = _tiles(half.path)
    per_row = SIZE // tile
    left = [i for i in range(len(a)) if i % per_row < per_row // 2]
    assert all(a[i] == b[i] for i in left)  # byte-identical JPEG tiles left of the edge
    assert sum(a[i] != b[i] for i in range(len(a)) if i not in left) > len(left) // 2


def test_ground_truth_records_the_blur_and_marks_its_cells(pair):
    sharp, half = pair
    assert half.blur_regions == ((SIZE // 2, 0, SIZE, SIZE),) and half.blur_sigma_um == BLUR_SIGMA_UM
    assert sharp.blur_regions == () and sharp.blur_sigma_um is None and sharp.blurred_cellular_fraction == 0
    for c in half.cells:
        assert c.blurred == ((c.box[0] + c.box[2]) / 2 >= SIZE // 2)
    assert half.cellular_area_px2 == sharp.cellular_area_px2 > 0
    # The spot is round and centred: about half of its cells lie in the right half.
    assert 0.3 < half.blurred_cellular_fraction < 0.7
    assert 0 < half.squamous_cells_blurred < half.squamous_cells
    data = json.loads(half.cells_path.read_text())
    assert data["blur_sigma_um"] == BLUR_SIGMA_UM and data["blur_regions"] == [[SIZE // 2, 0, SIZE, SIZE]]
    assert data["cellular_area_px2"] == half.cellular_area_px2
    assert data["blurred_cellular_area_px2"] == half.blurred_cellular_area_px2
    assert data["blurred_cellular_fraction"] == pytest.approx(half.blurred_cellular_fraction, abs=1e-6)
    assert (
        data["squamous_cells"]
        == half.squamous_cells
        == sum(data["counts"][name] for name in SQUAMOUS_CLASSES)
    )
    assert data["squamous_cells_blurred"] == sum(
        c["class"] in SQUAMOUS_CLASSES and c.get("blurred", False) for c in data["cells"]
    )
    assert [c.get("blurred", False) for c in data["cells"]] == [c.blurred for c in half.cells]
    assert all(c["blurred"] is True for c in data["cells"] if "blurred" in c)


def test_cellular_area_is_the_union_of_the_cell_masks(tmp_path):
    # Worked example: the area is counted on a 4-px grid, so it is a multiple of 16 px^2, and it is at most
    # the sum of the boxes' areas (masks lie inside their boxes; overlaps count once).
    truth = make_slide(tmp_path / "s.tiff", size=(1024, 1024), seed=1)
    boxes = sum((c.box[2] - c.box[0]) * (c.box[3] - c.box[1]) for c in truth.cells)
    assert truth.cellular_area_px2 % 16 == 0 and 0.3 * boxes < truth.cellular_area_px2 < boxes


def test_all_and_rectangles(tmp_path):
    full = make_slide(tmp_path / "all.tiff", size=(1024, 1024), seed=1, blur="all", blur_sigma_um=4.0)
    assert full.blur_regions == ((0, 0, 1024, 1024),) and full.blur_sigma_um == 4.0
    assert all(c.blurred for c in full.cells) and full.blurred_cellular_fraction == 1.0
    assert full.squamous_cells_blurred == full.squamous_cells > 0
    boxed = make_slide(tmp_path / "r.tiff", size=(1024, 1024), seed=1, blur=[(100, 200, 612, 900)])
    assert boxed.blur_regions == ((100, 200, 612, 900),)
    assert 0 < boxed.blurred_cellular_fraction < 1
    image = _levels(boxed.path)[0]
    # A blurred rectangle inside a block: its interior is smooth, the rest keeps its grain.
    inner = cv2.Laplacian(cv2.cvtColor(image[250:850, 150:560], cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    outer = cv2.Laplacian(cv2.cvtColor(image[250:850, 650:1020], cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    assert inner.var() < outer.var()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(blur="left"), "'half', 'all'"),
        (dict(blur=[(0, 0, 2000, 10)]), "0 <= x0 < x1 <= 256"),
        (dict(blur=[(10, 10, 5, 20)]), "x1/y1 exclusive"),
        (dict(blur=[(1, 2, 3)]), r"\(x0, y0, x1, y1\) integers"),
        (dict(blur="half", blur_sigma_um=0.0), "blur_sigma_um"),
        (dict(density=-0.1), "density"),
        (dict(density=6.0), "density"),
        (dict(abnormal={"candida": 1}), "ascus, lsil, hsil, scc, agc"),
        (dict(abnormal={"hsil": -1}), "integer 0-"),
        (dict(abnormal={"hsil": 1.5}), "integer 0-"),
    ],
)
def test_bad_quality_arguments_are_explained(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_slide(tmp_path / "x.tiff", size=(256, 256), **kwargs)


def test_density_zero_is_blank_glass(tmp_path):
    truth = make_slide(tmp_path / "blank.tiff", size=(2048, 2048), seed=6, density=0)
    assert truth.cells == () and truth.squamous_cells == 0 and truth.cellular_area_px2 == 0
    assert set(truth.counts().values()) == {0}
    data = json.loads(truth.cells_path.read_text())
    assert data["density"] == 0.0 and data["squamous_cells"] == 0 and data["cells"] == []
    image = _levels(truth.path)[1]
    assert image.min() > 200 and image.std() < 5  # glass, with its tint and illumination only
    with open_slide(truth.path) as slide:
        assert tissue_mask(slide).foreground_fraction < 0.001


def test_low_density_is_nearly_cell_free(tmp_path):
    normal = make_slide(tmp_path / "n.tiff", size=(2048, 2048), seed=6)
    sparse = make_slide(tmp_path / "s.tiff", size=(2048, 2048), seed=6, density=0.03)
    assert normal.squamous_cells >= 10
    assert sparse.squamous_cells <= max(1, 0.1 * normal.squamous_cells)
    assert sparse.cellular_area_px2 < 0.1 * normal.cellular_area_px2
    assert json.loads(sparse.cells_path.read_text())["density"] == 0.03


def test_abnormal_counts_are_exact_and_the_label_is_kept(tmp_path):
    truth = make_slide(tmp_path / "few.tiff", size=(1024, 1024), seed=2, label="HSIL", abnormal={"hsil": 2})
    counts = truth.counts()
    assert counts["hsil"] == 2 and all(counts[n] == 0 for n in ABNORMAL_CLASSES if n != "hsil")
    assert truth.label == "HSIL" and truth.abnormal == {"hsil": 2}
    data = json.loads(truth.cells_path.read_text())
    assert data["label"] == "HSIL" and data["abnormal"] == {"hsil": 2} and data["counts"]["hsil"] == 2
    # On blank glass the asked-for cells are the only cells; the mapping's order does not matter.
    kw = dict(size=(1024, 1024), seed=2, density=0)
    a = make_slide(tmp_path / "a.tiff", abnormal={"hsil": 3, "ascus": 1}, **kw)
    b = make_slide(tmp_path / "b.tiff", abnormal={"ascus": 1, "hsil": 3}, **kw)
    assert sorted(c.label for c in a.cells) == ["ascus", "hsil", "hsil", "hsil"]
    assert a.path.read_bytes() == b.path.read_bytes()


def test_label_cells_stay_on_a_blank_slide(tmp_path):
    truth = make_slide(tmp_path / "h.tiff", size=(1024, 1024), seed=2, label="HSIL", density=0)
    counts = truth.counts()
    assert counts["hsil"] >= 25 and truth.squamous_cells == sum(counts[n] for n in ("ascus", "lsil", "hsil"))
    assert counts["intermediate"] == counts["superficial"] == counts["parabasal"] == 0


def test_same_quality_arguments_same_bytes(tmp_path):
    kw = dict(
        size=(1536, 1024),
        format="aperio",
        seed=8,
        label="ASC-H",
        blur=[(700, 0, 1536, 600)],
        density=0.5,
        abnormal={"hsil": 4},
    )
    a = make_slide(tmp_path / "a.svs", **kw)
    b = make_slide(tmp_path / "b.svs", **kw)
    assert a.path.read_bytes() == b.path.read_bytes()
    ja, jb = json.loads(a.cells_path.read_text()), json.loads(b.cells_path.read_text())
    assert ja.pop("slide") == "a.svs" and jb.pop("slide") == "b.svs" and ja == jb


def test_old_arguments_draw_the_old_slide(tmp_path):
    # The cells of this slide as the generator drew them before blur/density/abnormal existed (commit
    # 2679cab): the new options must not move any random draw when left at their defaults.
    truth = make_slide(tmp_path / "old.tiff", size=(1024, 1024), seed=3, label="HSIL")
    cells = json.dumps([[list(c.box), c.label] for c in truth.cells])
    assert len(truth.cells) == 63
    assert hashlib.sha256(cells.encode()).hexdigest()[:16] == "96bec4a3401170bb"
    explicit = make_slide(
        tmp_path / "explicit.tiff",
        size=(1024, 1024),
        seed=3,
        label="HSIL",
        blur=None,
        density=1.0,
        abnormal=None,
    )
    assert explicit.path.read_bytes() == truth.path.read_bytes()
    # The old keys of the ground truth come first and unchanged; the new ones follow "counts".
    data = json.loads(truth.cells_path.read_text())
    assert list(data)[:11] == [
        "slide",
        "generator",
        "seed",
        "label",
        "format",
        "width",
        "height",
        "mpp",
        "levels",
        "classes",
        "counts",
    ]
    assert data["classes"] == list(CLASSES) and all(set(c) == {"box", "class"} for c in data["cells"])
