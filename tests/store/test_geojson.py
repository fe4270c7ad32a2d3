"""Tests of cytolt.store.geojson: QuPath feature building and the rule checker."""

from __future__ import annotations

import copy
import uuid

import pytest
from shapely.geometry import shape

from cytolt.store.geojson import (
    box_polygon,
    check_qupath_geojson,
    detection_feature,
    detection_uuid,
    feature_collection,
)


def _doc() -> dict:
    f = detection_feature(
        feature_id=detection_uuid("hash", "3:10:20:50:60"),
        box=(10, 20, 50, 60),
        class_name="HSIL",
        color=(214, 39, 40),
        measurements={"score": 0.9},
        name="HSIL 0.90",
    )
    return feature_collection([f])


def test_box_polygon_is_a_closed_ring_with_the_box_area() -> None:
    geom = shape(box_polygon((10.5, 20, 50, 60)))
    assert geom.is_valid and geom.geom_type == "Polygon"
    assert geom.area == pytest.approx(39.5 * 40)
    assert geom.bounds == (10.5, 20, 50, 60)


def test_detection_uuid_is_deterministic_and_distinct() -> None:
    a = detection_uuid("hash", "1:0:0:10:10")
    assert a == detection_uuid("hash", "1:0:0:10:10")
    assert uuid.UUID(a).version == 5
    assert a != detection_uuid("hash", "1:0:0:10:11") and a != detection_uuid("other", "1:0:0:10:10")


def test_a_built_feature_passes_the_checker() -> None:
    doc = _doc()
    check_qupath_geojson(doc)
    props = doc["features"][0]["properties"]
    assert props["objectType"] == "detection"
    assert props["classification"] == {"name": "HSIL", "color": [214, 39, 40]}


def _break(path: list, value: object) -> dict:
    doc = copy.deepcopy(_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["type"], "GeometryCollection", "FeatureCollection"),
        (["features", 0, "id"], "not-a-uuid", "UUID string"),
        (["features", 0, "id"], 12, "UUID string"),
        (["features", 0, "objectType"], "detection", "belongs in properties"),
        (["features", 0, "properties", "objectType"], "tile", "objectType must be one of"),
        (["features", 0, "properties", "objectType"], KeyError, "objectType must be one of"),
        (["features", 0, "properties", "classification", "color"], [255, 0], "classification"),
        (["features", 0, "properties", "classification", "color"], [256, 0, 0], "classification"),
        (["features", 0, "properties", "measurements", "score"], float("nan"), "finite numbers"),
        (["features", 0, "properties", "measurements", "score"], "high", "finite numbers"),
        (["features", 0, "geometry", "coordinates"], [[[0, 0], [1, 1], [0, 0], [1, 1], [0, 0]]], "invalid"),
        (["features", 0, "geometry", "type"], "Blob", "not valid GeoJSON"),
    ],
)
def test_checker_names_each_broken_rule(path: list, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_qupath_geojson(_break(path, value))


def test_checker_refuses_duplicate_ids() -> None:
    doc = _doc()
    doc["features"].append(copy.deepcopy(doc["features"][0]))
    with pytest.raises(ValueError, match="duplicate id"):
        check_qupath_geojson(doc)


def test_unknown_object_type_is_refused_when_building() -> None:
    with pytest.raises(ValueError, match="'annotation', 'detection', 'cell'"):
        detection_feature(
            feature_id=str(uuid.uuid4()),
            box=(0, 0, 1, 1),
            class_name="x",
            color=(0, 0, 0),
            measurements={},
            object_type="roi",
        )
