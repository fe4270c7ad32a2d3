"""cytolt/datasets/class_map.py: lab names to training classes; unmapped names listed and refused."""

from __future__ import annotations

import json

import pytest

from cytolt.datasets.annotations import SlideAnnotation
from cytolt.datasets.class_map import (
    DEFAULT_POINT_BOX_UM,
    ClassMap,
    UnmappedClassError,
    class_map_from_names,
    load_class_map,
)
from cytolt.datasets.coco import AnnotationError

YAML = """
classes: [ascus, lsil, hsil]
map:
  ASC-US: ascus
  Koilocyte: lsil
  Unclassified: null
point_box_um: {default: 30, hsil: 12}
"""


def _ann(name, k=0):
    return SlideAnnotation(slide="a", box=(0, 0, 1, 1), class_name=name, source=f"a.geojson: feature {k}")


def test_yaml_map_applies_with_identity_for_training_names(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(YAML)
    cmap = load_class_map(path)
    assert cmap.classes == ("ascus", "lsil", "hsil")
    anns = [_ann("ASC-US", 0), _ann("hsil", 1), _ann("Koilocyte", 2), _ann("Unclassified", 3)]
    result = cmap.apply(anns)
    assert [label for _, label in result.kept] == [0, 2, 1]
    assert result.dropped_null == {"Unclassified": 1} and result.dropped_unmapped == {}
    assert cmap.box_um("hsil") == 12 and cmap.box_um("ascus") == 30


def test_unmapped_names_are_listed_with_counts_and_refused_unless_dropped(tmp_path):
    cmap = ClassMap(classes=("ascus", "hsil"), mapping={"ASC-US": "ascus"})
    anns = [_ann("HSIL", 0), _ann("Foo", 1), _ann("HSIL", 2)]
    with pytest.raises(UnmappedClassError) as err:
        cmap.apply(anns)
    assert err.value.names == {"HSIL": (2, "a.geojson: feature 0"), "Foo": (1, "a.geojson: feature 1")}
    text = str(err.value)
    assert "'HSIL': 2 annotation(s), first at a.geojson: feature 0; did you mean 'hsil'?" in text
    assert "--drop-unmapped" in text
    result = cmap.apply(anns, drop_unmapped=True)
    assert result.kept == [] and result.dropped_unmapped == {"HSIL": 2, "Foo": 1}


def test_json_map_without_classes_takes_the_targets_in_order(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"map": {"b": "second", "a": "first", "c": "second"}, "point_box_um": 20}))
    cmap = load_class_map(path)
    assert cmap.classes == ("second", "first")
    assert cmap.box_um("first") == 20
    assert cmap.to_dict()["classes"] == ["second", "first"]


@pytest.mark.parametrize(
    ("text", "suffix", "words"),
    [
        ("classes: [a]\nmap: {x: b}\n", ".yaml", "map: x: maps to 'b', not a training class"),
        ("classes: [a, a]\n", ".yaml", "classes: listed twice"),
        ("classes: [a]\npoint_box_um: {b: 3}\n", ".yaml", "point_box_um: b: not a training class"),
        ("classes: [a]\npoint_box_um: -1\n", ".yaml", "point_box_um: default: must be a positive number"),
        ("classes: [a]\ncolours: {}\n", ".yaml", "unknown keys ['colours']"),
        ("classes: [a\n", ".yaml", "not valid YAML"),
        ('{"classes": [}', ".json", "line 1: not valid JSON"),
        ("classes: [a]\n", ".txt", "a class map is .yaml, .yml or .json"),
        ("map: {}\n", ".yaml", "classes: no training classes"),
    ],
)
def test_bad_class_maps_name_the_file_and_key(tmp_path, text, suffix, words):
    path = tmp_path / f"map{suffix}"
    path.write_text(text)
    with pytest.raises(AnnotationError) as err:
        load_class_map(path)
    assert str(err.value).startswith(str(path)) and words in str(err.value)


def test_identity_map_of_names():
    cmap = class_map_from_names(["b", "a", "b"])
    assert cmap.classes == ("a", "b") and cmap.target("b") == "b"
    assert cmap.box_um("a") == DEFAULT_POINT_BOX_UM
