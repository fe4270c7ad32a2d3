"""napari_cytolt._writer: detections layers through the run's store, other layers as QuPath annotations."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from napari_cytolt._reader import read_run
from napari_cytolt._writer import (
    write_points_csv,
    write_points_geojson,
    write_shapes_csv,
    write_shapes_geojson,
)

from cytolt.store import DetectionStore, check_qupath_geojson, to_geojson


def test_detections_layer_is_exported_from_the_store_with_reviews(demo_run, tmp_path):
    _, (data, kwargs, _) = read_run(demo_run.run_dir)
    with DetectionStore(demo_run.store_path) as store:
        store.add_review(int(kwargs["features"]["id"][0]), "reject", reviewer="ann")
        expected = to_geojson(store, demo_run.slide_id, None)
    meta = {"metadata": kwargs["metadata"], "features": kwargs["features"], "name": kwargs["name"]}
    [path] = write_points_geojson(str(tmp_path / "d.geojson"), data, meta)
    doc = json.loads(open(path).read())
    check_qupath_geojson(doc)
    assert doc == expected
    assert sum("review" in f["properties"] for f in doc["features"]) == 1
    [path] = write_points_csv(str(tmp_path / "d.csv"), data, meta)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == len(data)
    assert [r["review_decision"] for r in rows].count("reject") == 1


def test_plain_points_become_qupath_point_annotations(tmp_path):
    data = np.array([[10.0, 20.0], [30.5, 40.25]])  # napari (row, column)
    features = pd.DataFrame({"class": ["hsil", "lsil"], "score": [0.9, 0.4]})
    meta = {"metadata": {}, "features": features, "name": "mine"}
    [path] = write_points_geojson(str(tmp_path / "p.geojson"), data, meta)
    doc = json.loads(open(path).read())
    check_qupath_geojson(doc)
    coords = [f["geometry"]["coordinates"] for f in doc["features"]]
    assert coords == [[20.5, 10.5], [40.75, 31.0]]  # x = column + 0.5: napari centres pixels on integers
    assert [f["properties"]["classification"]["name"] for f in doc["features"]] == ["hsil", "lsil"]
    assert doc["features"][0]["properties"]["measurements"] == {"score": 0.9}
    assert json.loads(open(write_points_geojson(str(tmp_path / "q.geojson"), data, meta)[0]).read()) == doc
    [path] = write_points_csv(str(tmp_path / "p.csv"), data, meta)
    rows = list(csv.DictReader(open(path)))
    assert rows[1] == {"x": "40.75", "y": "31.00", "class": "lsil", "score": "0.4"}


def test_shapes_become_polygons_and_lines(tmp_path):
    rect = np.array([[0, 0], [0, 10], [20, 10], [20, 0]], dtype=float)
    tri = np.array([[5, 5], [5, 15], [15, 5]], dtype=float)
    ellipse = np.array([[100, 100], [100, 140], [120, 140], [120, 100]], dtype=float)
    path = np.array([[0, 0], [50, 50], [60, 0]], dtype=float)
    meta = {
        "shape_type": ["rectangle", "polygon", "ellipse", "path"],
        "features": pd.DataFrame(),
        "name": "s",
    }
    data = [rect, tri, ellipse, path]
    [out] = write_shapes_geojson(str(tmp_path / "s.geojson"), data, meta)
    doc = json.loads(open(out).read())
    check_qupath_geojson(doc)
    geoms = [f["geometry"] for f in doc["features"]]
    assert [g["type"] for g in geoms] == ["Polygon", "Polygon", "Polygon", "LineString"]
    ring = np.array(geoms[0]["coordinates"][0])
    assert ring.min(axis=0).tolist() == [0.5, 0.5] and ring.max(axis=0).tolist() == [10.5, 20.5]
    # the ellipse: centre (x, y) = (120.5, 110.5), half axes 20 (x) and 10 (y)
    e = np.array(geoms[2]["coordinates"][0])
    assert np.allclose(((e[:, 0] - 120.5) / 20) ** 2 + ((e[:, 1] - 110.5) / 10) ** 2, 1)
    [out] = write_shapes_csv(str(tmp_path / "s.csv"), data, meta)
    rows = list(csv.DictReader(open(out)))
    assert [r["type"] for r in rows] == meta["shape_type"]
    assert [rows[0][k] for k in ("x0", "y0", "x1", "y1")] == ["0.50", "0.50", "10.50", "20.50"]


@pytest.mark.napari
def test_viewer_saves_the_detections_layer_through_the_plugin(make_napari_viewer, demo_run, tmp_path):
    viewer = make_napari_viewer()
    _, points = viewer.open(str(demo_run.run_dir), plugin="napari-cytolt")
    target = tmp_path / "detections.geojson"
    viewer.layers.selection = {points}
    written = viewer.layers.save(str(target), selected=True, plugin="napari-cytolt")
    assert [str(p) for p in written] == [str(target)]
    doc = json.loads(target.read_text())
    check_qupath_geojson(doc)
    assert len(doc["features"]) == len(points.data)
