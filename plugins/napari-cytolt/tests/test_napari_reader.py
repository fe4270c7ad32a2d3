"""napari_cytolt._reader: slide files as lazy multiscale pyramids in microns, run folders with detections."""

from __future__ import annotations

import numpy as np
import pytest
from napari_cytolt._reader import layer_info, napari_get_reader, read_run

from cytolt.demo_run import make_demo_run
from cytolt.io import SlideLevelArray, open_slide
from cytolt.store import DetectionStore


def test_reader_declines_what_it_cannot_read_without_raising(tmp_path, openslide_fixtures, demo_run):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    (tmp_path / "fake.svs").write_bytes(b"not a slide")
    for path in [
        tmp_path / "missing.svs",
        tmp_path / "notes.txt",
        tmp_path / "folder",
        tmp_path / "fake.svs",
        openslide_fixtures / "unopenable.tiff",
        [str(demo_run.slide_path), str(demo_run.slide_path)],
        [],
        "",
    ]:
        assert napari_get_reader(path if isinstance(path, list) else str(path)) is None, path


def test_slide_opens_as_a_lazy_pyramid_scaled_in_microns(demo_run):
    reader = napari_get_reader(str(demo_run.slide_path))
    assert reader is not None
    [(levels, kwargs, kind)] = reader(str(demo_run.slide_path))
    assert kind == "image"
    assert kwargs["multiscale"] is True and kwargs["rgb"] is True
    with open_slide(demo_run.slide_path) as slide:
        mpp_x, mpp_y = slide.mpp
        assert [lv.shape for lv in levels] == [(h, w, 3) for w, h in slide.level_dimensions]
        assert np.array_equal(levels[1][5:40, 7:30], slide.read_region((14, 10), 1, (23, 35)))
    assert all(isinstance(lv, SlideLevelArray) for lv in levels)
    assert kwargs["scale"] == (mpp_y, mpp_x) == (0.25, 0.25)
    assert kwargs["units"] == ("um", "um")


def test_real_aperio_slide_opens_with_its_mpp(openslide_fixtures):
    path = openslide_fixtures / "small.svs"
    [(levels, kwargs, _)] = napari_get_reader(str(path))(str(path))
    with open_slide(path) as slide:
        assert kwargs["scale"] == (slide.mpp[1], slide.mpp[0])
        assert levels[0].shape == (slide.dimensions[1], slide.dimensions[0], 3)


def test_run_folder_opens_its_slide_and_detections(demo_run):
    for path in (demo_run.run_dir, demo_run.store_path):
        assert napari_get_reader(str(path)) is not None
    layers = napari_get_reader(str(demo_run.run_dir))(str(demo_run.run_dir))
    assert [kind for _, _, kind in layers] == ["image", "points"]
    (levels, image_kw, _), (points, points_kw, _) = layers
    with DetectionStore(demo_run.store_path, readonly=True) as store:
        dets, ids = store.query(demo_run.slide_id)
        names = store.class_names
    features = points_kw["features"]
    assert points.shape == (len(ids), 2)
    assert features["id"].tolist() == ids.tolist()
    assert features["class"].tolist() == [names[i] for i in dets.labels.tolist()]
    assert np.allclose(features["score"], dets.scores.numpy())
    boxes = dets.boxes.numpy()
    assert np.allclose(points[:, 1], (boxes[:, 0] + boxes[:, 2]) / 2 - 0.5)
    assert np.allclose(points_kw["size"], np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
    assert points_kw["scale"] == image_kw["scale"] == (0.25, 0.25)
    # each marker's border has its class colour: two classes, two colours
    colors = points_kw["border_color"]
    first = {int(lab): tuple(c) for lab, c in zip(dets.labels.tolist(), colors.tolist(), strict=True)}
    assert len(set(first.values())) == len(first)
    for kw, role in ((image_kw, "slide"), (points_kw, "detections")):
        info = layer_info(kw["metadata"])
        assert info.role == role and info.run == demo_run  # the typed run slide, not strings
    assert layer_info(image_kw["metadata"]).slide_path == demo_run.slide_path


def test_run_folder_finds_a_moved_slide_and_warns_when_it_is_gone(tmp_path):
    run = make_demo_run(tmp_path / "lab" / "run", size=(512, 512), slide_dir=tmp_path / "scanner", seed=2)
    beside = run.run_dir.parent / run.name
    run.slide_path.rename(beside)  # the slides were moved next to the run folder
    layers = read_run(run.run_dir)
    assert layer_info(layers[0][1]["metadata"]).slide_path == beside
    assert len(layers[1][0]) > 0
    beside.unlink()
    reader = napari_get_reader(str(run.run_dir))
    assert reader is not None  # the run folder is still recognised ...
    with pytest.warns(UserWarning, match="copy it next to the run folder"):
        assert reader(str(run.run_dir)) == []  # ... and napari is told why nothing opens
