"""napari_cytolt._reader: slide files as lazy multiscale pyramids in microns, run folders with detections,
QuPath GeoJSON as shapes and points."""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari_cytolt._reader import layer_info, napari_get_reader, read_geojson, read_run

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


# ----------------------------------------------------------------------------------------------- GeoJSON
def _exported(run, **kwargs):
    from cytolt.review.export import export_run

    [done] = export_run(run.run_dir, formats=("geojson",), progress=False, **kwargs)
    return done.files["geojson"], json.loads(done.files["geojson"].read_text())["features"]


def test_cytolt_export_opens_as_shapes_in_microns_with_class_colours(demo_run, tmp_path):
    from cytolt.synth import CLASS_COLORS

    path, features = _exported(demo_run)
    reader = napari_get_reader(str(path))
    assert reader is not None
    [(shapes, kwargs, kind)] = reader(str(path))
    assert kind == "shapes" and kwargs["shape_type"] == ["rectangle"] * len(features)  # every box
    assert len(shapes) == len(features) > 0
    assert kwargs["scale"] == (0.25, 0.25) and kwargs["units"] == ("um", "um")  # the store's mpp of the slide
    names = [f["properties"]["classification"]["name"] for f in features]
    assert kwargs["features"]["class"].tolist() == names
    assert np.allclose(
        kwargs["features"]["score"], [f["properties"]["measurements"]["score"] for f in features]
    )
    assert np.allclose(kwargs["edge_color"][:, :3] * 255, [CLASS_COLORS[n] for n in names])
    # vertices: napari (row, column) with pixel centres on integers, the ring without its closing point
    ring = np.array(features[0]["geometry"]["coordinates"][0])
    assert np.allclose(shapes[0][:, ::-1] + 0.5, ring[:-1])

    # the same file outside a run folder: level-0 pixels
    elsewhere, _ = _exported(demo_run, out=tmp_path / "exports")
    [(_, kwargs, _)] = read_geojson(elsewhere)
    assert kwargs["scale"] == (1.0, 1.0) and "units" not in kwargs


def test_qupath_geojson_with_points_multipolygons_and_legacy_fields(tmp_path):
    doc = [  # a plain list of features, as older QuPath exports
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [10.5, 20.5]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "HSIL", "colorRGB": -65536},  # QuPath < 0.4: packed ARGB (red)
                "measurements": [{"name": "score", "value": 0.7}],
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [
                    [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]],
                    [[[20, 20], [30, 20], [25, 30], [20, 20]]],
                ],
            },
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "LSIL", "color": [0, 128, 255]},
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
            "properties": {},
        },
    ]
    path = tmp_path / "slide_1.geojson"
    path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="skipped LineString features"):
        layers = napari_get_reader(str(path))(str(path))
    assert [kind for _, _, kind in layers] == ["shapes", "points"]
    (shapes, shape_kw, _), (points, point_kw, _) = layers
    assert [len(s) for s in shapes] == [4, 3]  # one shape per polygon of the MultiPolygon
    assert shape_kw["shape_type"] == ["rectangle", "polygon"]
    assert shape_kw["features"]["class"].tolist() == ["LSIL", "LSIL"]
    assert np.isnan(shape_kw["features"]["score"]).all()
    assert np.allclose(shape_kw["edge_color"][0] * 255, [0, 128, 255, 255])
    assert np.allclose(points, [[20.0, 10.0]])
    assert point_kw["features"]["score"].tolist() == [0.7]
    assert np.allclose(point_kw["face_color"][0] * 255, [255, 0, 0, 255])
    assert shape_kw["scale"] == point_kw["scale"] == (1.0, 1.0)


def test_unreadable_geojson_warns_naming_the_file(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.warns(UserWarning, match=f"{bad}: not valid JSON"):
        assert napari_get_reader(str(bad))(str(bad)) == []
    wrong = tmp_path / "wrong.geojson"
    wrong.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": "x"}}],
            }
        )
    )
    with pytest.warns(UserWarning, match=f"{wrong}: feature 0: its Point coordinates"):
        assert napari_get_reader(str(wrong))(str(wrong)) == []


@pytest.mark.napari
def test_viewer_opens_cytolt_export_through_the_plugin(make_napari_viewer, demo_run):
    path, features = _exported(demo_run)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-cytolt")
    assert type(layer).__name__ == "Shapes" and len(layer.data) == len(features)
    assert tuple(layer.scale) == (0.25, 0.25)
    assert layer.features["class"].tolist() == [f["properties"]["classification"]["name"] for f in features]
