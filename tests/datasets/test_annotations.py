"""cytolt/datasets/annotations.py: QuPath GeoJSON, COCO and CSV read into level-0 records; bad input named."""

from __future__ import annotations

import json

import pytest

from cytolt.datasets.annotations import (
    UNCLASSIFIED,
    read_annotations,
    slide_matches,
    write_qupath_geojson,
)
from cytolt.datasets.coco import AnnotationError
from cytolt.store.geojson import check_qupath_geojson


def _feature(geometry, name="HSIL", object_type="annotation", **extra):
    props = {"objectType": object_type, **extra}
    if name is not None:
        props["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": props}


RECT = {"type": "Polygon", "coordinates": [[[10, 20], [50, 20], [50, 60], [10, 60], [10, 20]]]}


def test_qupath_geometries_become_boxes_and_points(tmp_path):
    doc = {
        "type": "FeatureCollection",
        "features": [
            _feature(RECT),
            _feature({"type": "Point", "coordinates": [100.5, 200.0]}, name="LSIL", object_type="detection"),
            _feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, name="ASC-US"),
            _feature(
                {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[0, 0], [4, 0], [4, 4], [0, 0]]],
                        [[[10, 10], [30, 12], [20, 40], [10, 10]]],
                    ],
                },
                name=None,
            ),
        ],
    }
    path = tmp_path / "slide1.svs.geojson"
    path.write_text(json.dumps(doc))
    records = read_annotations(path)
    assert [r.slide for r in records] == ["slide1.svs"] * 5
    assert records[0].box == (10, 20, 50, 60) and not records[0].is_point
    assert records[1].box == (100.5, 200.0, 100.5, 200.0) and records[1].is_point
    assert records[1].object_type == "detection" and records[1].class_name == "LSIL"
    assert [r.box[:2] for r in records[2:4]] == [(1, 2), (3, 4)]
    assert records[3].source.endswith("feature 2 point 1")
    assert records[4].box == (0, 0, 30, 40)  # the bounds of both parts
    assert records[4].class_name == UNCLASSIFIED


def test_plain_list_legacy_type_and_object_type_filter(tmp_path):
    legacy = {"type": "Feature", "id": "PathDetectionObject", "geometry": RECT, "properties": {}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps([_feature(RECT, object_type="annotation"), legacy]))
    records = read_annotations(path)
    assert [r.object_type for r in records] == ["annotation", "detection"]
    assert records[0].slide == "a"
    only = read_annotations(path, object_types=("annotation",))
    assert len(only) == 1
    derived = _feature(RECT, name=None)
    derived["properties"]["classification"] = {"names": ["Tumor", "Positive"]}
    path.write_text(json.dumps([derived]))
    assert read_annotations(path)[0].class_name == "Tumor: Positive"


@pytest.mark.parametrize(
    ("features", "entry", "words"),
    [
        (
            [_feature(RECT), _feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})],
            "feature 1",
            "LineString",
        ),
        ([_feature(None)], "feature 0", "no geometry"),
        ([_feature({"type": "Point", "coordinates": ["a", 1]})], "feature 0", "finite numbers"),
        (
            [_feature({"type": "Polygon", "coordinates": [[[0, 0], [0, 5], [0, 9], [0, 0]]]})],
            "feature 0",
            "no area",
        ),
        ([{"type": "Thing"}], "feature 0", "not a GeoJSON Feature"),
        ([_feature(RECT, object_type=3)], "feature 0", "objectType must be a string"),
    ],
)
def test_bad_geojson_names_file_and_feature(tmp_path, features, entry, words):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(AnnotationError) as err:
        read_annotations(path)
    assert err.value.source == str(path) and err.value.entry == entry
    assert words in str(err.value)


def test_bad_json_names_its_line(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text('{"type": "FeatureCollection",\n "features": [oops]}')
    with pytest.raises(AnnotationError, match=r"bad.geojson: line 2: not valid JSON"):
        read_annotations(path)
    path.write_text('{"something": 1}')
    with pytest.raises(AnnotationError, match="expected a GeoJSON FeatureCollection"):
        read_annotations(path)


def test_coco_images_are_slides(tmp_path):
    doc = {
        "images": [
            {"id": 1, "file_name": "scans/a.svs", "width": 1000, "height": 800},
            {"id": 2, "file_name": "b.svs"},
        ],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40]},
            {"id": 8, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]},
        ],
        "categories": [{"id": 3, "name": "HSIL"}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    records = read_annotations(path)
    assert [(r.slide, r.box, r.class_name) for r in records] == [
        ("scans/a.svs", (10, 20, 40, 60), "HSIL"),
        ("b.svs", (1, 2, 4, 6), "HSIL"),
    ]
    assert records[0].source == f"{path}: annotation 0 (id 7)"
    doc["annotations"][1]["bbox"] = [990, 10, 30, 5]
    doc["annotations"][0]["bbox"] = [990, 10, 30, 5]  # past the slide's 1000 px width
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"annotation 0 \(id 7\): bbox .* outside its image"):
        read_annotations(path)


def test_csv_boxes_points_and_errors(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("Slide,x0,y0,x1,y1,Class,note\na.svs,1,2,3,4,HSIL,x\n\nb.svs,5,6,9,8,LSIL,\n")
    records = read_annotations(path)
    assert [(r.slide, r.box, r.class_name, r.is_point) for r in records] == [
        ("a.svs", (1, 2, 3, 4), "HSIL", False),
        ("b.svs", (5, 6, 9, 8), "LSIL", False),
    ]
    assert records[1].source == f"{path}: line 4"
    path.write_text("slide,x,y,class\na.svs,10,20,HSIL\n")
    (point,) = read_annotations(path)
    assert point.is_point and point.box == (10, 20, 10, 20)
    for text, match in [
        ("slide,x0,y0,x1,y1,class\na.svs,1,2,zz,4,HSIL\n", r"line 2: x1 'zz' is not a number"),
        ("slide,x0,y0,x1,y1,class\na.svs,5,2,3,4,HSIL\n", r"line 2: box .* has no area"),
        ("slide,xmin,ymin,class\na,1,2,c\n", r"line 1: header lacks \['x0', 'y0', 'x1', 'y1'\]"),
        ("slide,x,y,class\na.svs,1,2,\n", r"line 2: empty slide or class"),
    ]:
        path.write_text(text)
        with pytest.raises(AnnotationError, match=match):
            read_annotations(path)


def test_a_folder_reads_every_file_and_unknown_suffixes_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("slide,x,y,class\na.svs,10,20,HSIL\n")
    (tmp_path / "b.geojson").write_text(json.dumps([_feature(RECT)]))
    (tmp_path / "notes.txt").write_text("ignored")
    assert [r.slide for r in read_annotations(tmp_path)] == ["a.svs", "b"]
    with pytest.raises(AnnotationError, match="unknown annotation format '.txt'"):
        read_annotations(tmp_path / "notes.txt")
    with pytest.raises(AnnotationError, match="annotation file not found"):
        read_annotations(tmp_path / "missing.geojson")


def test_slide_matches_by_name_stem_or_first_part():
    assert slide_matches("a.svs", "/x/a.svs") and slide_matches("a", "/x/a.svs")
    assert slide_matches("scans/a.ome.tiff", "a.ome.tiff") and slide_matches("a", "a.ome.tiff")
    assert not slide_matches("ab", "a.svs") and not slide_matches("a.tiff", "a.svs")


def test_written_geojson_passes_qupath_rules_and_reads_back(tmp_path):
    path = tmp_path / "s.tiff.geojson"
    boxes = [(1, 2, 30, 40), (100, 100, 150, 170)]
    doc = write_qupath_geojson(path, boxes, ["hsil", "lsil"])
    check_qupath_geojson(doc)
    again = write_qupath_geojson(tmp_path / "s.tiff.geojson", boxes, ["hsil", "lsil"])
    assert [f["id"] for f in again["features"]] == [f["id"] for f in doc["features"]]  # stable ids
    records = read_annotations(path)
    assert [(r.slide, r.box, r.class_name) for r in records] == [
        ("s.tiff", (1, 2, 30, 40), "hsil"),
        ("s.tiff", (100, 100, 150, 170), "lsil"),
    ]
