"""Tests of cytolt.store.export: QuPath GeoJSON, CSV and COCO results written from a store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import shape

from cytolt.detect.types import Detections
from cytolt.store.export import ExportSelection, to_coco_results, to_csv, to_geojson
from cytolt.store.geojson import DEFAULT_COLORS, check_qupath_geojson
from cytolt.store.store import DetectionStore

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]
BOXES = np.array([[100, 200, 140, 250], [1000.5, 2000, 1030, 2044], [5, 5, 25, 30]], dtype=np.float32)
SCORES = [0.9, 0.6, 0.2]
LABELS = [3, 1, 0]
CLASS_SCORES = np.array(
    [[0.0, 0.05, 0.05, 0.9], [0.1, 0.6, 0.3, 0.0], [0.2, 0.1, 0.1, 0.1]], dtype=np.float32
)


def _fill(path: Path, *, content_hash: str | None = "sha-1") -> tuple[DetectionStore, int, np.ndarray]:
    store = DetectionStore(path)
    sid = store.add_slide("/patients/jane-doe-1234.svs", content_hash=content_hash)
    dets = Detections(boxes=BOXES, scores=SCORES, labels=LABELS, class_scores=CLASS_SCORES)
    ids = store.add_detections(sid, dets, CLASSES)
    return store, sid, ids


def test_geojson_follows_qupath_rules_and_carries_scores_and_reviews(tmp_path: Path) -> None:
    store, sid, ids = _fill(tmp_path / "run.sqlite")
    store.add_review(int(ids[1]), "reclassify", new_label="LSIL", reviewer="ann")
    store.add_review(int(ids[2]), "reject", reviewer="bob")
    out = tmp_path / "s.geojson"
    doc = to_geojson(store, sid, out, class_colors={"HSIL": (255, 0, 0)})
    assert json.loads(out.read_text()) == doc
    check_qupath_geojson(doc)
    assert "jane-doe" not in out.read_text()  # no slide path (patient data) in exports

    feats = doc["features"]
    assert len(feats) == 3
    by_model = {f["properties"]["model_class"]: f for f in feats}
    hsil = by_model["HSIL"]
    assert hsil["properties"]["classification"] == {"name": "HSIL", "color": [255, 0, 0]}
    assert hsil["properties"]["measurements"]["score"] == pytest.approx(0.9)
    assert hsil["properties"]["measurements"]["p_HSIL"] == pytest.approx(0.9)
    assert shape(hsil["geometry"]).bounds == tuple(float(v) for v in BOXES[0])
    assert shape(hsil["geometry"]).area == pytest.approx(40 * 50)
    assert "review" not in hsil["properties"]

    reclassified = by_model["ASC-US"]["properties"]
    assert reclassified["classification"]["name"] == "LSIL"
    assert reclassified["classification"]["color"] == list(DEFAULT_COLORS[2])
    assert reclassified["review"]["decision"] == "reclassify" and reclassified["review"]["reviewer"] == "ann"
    assert reclassified["measurements"]["review_accepted"] == 1.0
    assert by_model["NILM"]["properties"]["measurements"]["review_accepted"] == 0.0

    kept = to_geojson(store, sid, None, selection=ExportSelection(rejected=False, min_score=0.5))
    assert {f["properties"]["model_class"] for f in kept["features"]} == {"HSIL", "ASC-US"}
    store.close()


def test_geojson_ids_are_reproducible_across_runs(tmp_path: Path) -> None:
    a, sid_a, _ = _fill(tmp_path / "a.sqlite")
    b, sid_b, _ = _fill(tmp_path / "b.sqlite")
    ids_a = sorted(f["id"] for f in to_geojson(a, sid_a, None)["features"])
    ids_b = sorted(f["id"] for f in to_geojson(b, sid_b, None)["features"])
    assert ids_a == ids_b and len(set(ids_a)) == 3
    c, sid_c, _ = _fill(tmp_path / "c.sqlite", content_hash="sha-2")  # another slide: other ids
    assert set(ids_a).isdisjoint(f["id"] for f in to_geojson(c, sid_c, None)["features"])
    for s in (a, b, c):
        s.close()


def test_geojson_rejects_colours_for_unknown_classes(tmp_path: Path) -> None:
    store, sid, _ = _fill(tmp_path / "run.sqlite")
    with pytest.raises(ValueError, match="unknown classes \\['SCC'\\]"):
        to_geojson(store, sid, None, class_colors={"SCC": (0, 0, 0)})
    store.close()


def test_csv_has_one_row_per_detection_with_class_scores_and_reviews(tmp_path: Path) -> None:
    store, sid, ids = _fill(tmp_path / "run.sqlite")
    sid2 = store.add_slide("other.svs")
    store.add_detections(
        sid2, Detections(boxes=[[0, 0, 9, 9]], scores=[0.3], labels=[2], class_scores=[[0, 0, 1, 0]])
    )
    store.add_review(int(ids[0]), "accept", reviewer="ann")
    out = tmp_path / "d.csv"
    assert to_csv(store, None, out) == 4
    rows = list(csv.DictReader(out.open()))
    assert [int(r["slide_id"]) for r in rows] == [sid, sid, sid, sid2]
    first = rows[0]
    assert first["class"] == "HSIL" and int(first["detection_id"]) == ids[0]
    assert [float(first[k]) for k in ("x0", "y0", "x1", "y1")] == [100, 200, 140, 250]
    assert float(first["p_HSIL"]) == pytest.approx(0.9)
    assert first["review_decision"] == "accept" and first["reviewer"] == "ann"
    assert rows[1]["review_decision"] == ""
    assert to_csv(store, sid, tmp_path / "one.csv", selection=ExportSelection(min_score=0.5)) == 2
    store.close()


def test_coco_results_load_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    store, sid, _ = _fill(tmp_path / "run.sqlite")
    out = tmp_path / "results.json"
    res = to_coco_results(store, sid, out, image_id=7)
    assert json.loads(out.read_text()) == res
    assert [r["category_id"] for r in res] == [4, 2, 1]  # label + 1, by descending score
    assert res[1]["bbox"] == pytest.approx([1000.5, 2000, 29.5, 44])

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 7, "width": 4000, "height": 4000}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
        "annotations": [],
    }
    gt.createIndex()
    dt = gt.loadRes(str(out))
    anns = dt.loadAnns(dt.getAnnIds(imgIds=[7]))
    assert len(anns) == 3
    assert sorted(a["area"] for a in anns) == pytest.approx(sorted([40 * 50, 29.5 * 44, 20 * 25]))
    assert len(to_coco_results(store, sid, selection=ExportSelection(min_score=0.5))) == 2
    store.close()


def test_selection_applies_alike_to_every_format(tmp_path: Path) -> None:
    store, sid, ids = _fill(tmp_path / "run.sqlite")
    store.add_review(int(ids[1]), "reclassify", new_label="LSIL", reviewer="ann")  # ASC-US 0.6 -> LSIL
    store.add_review(int(ids[1]), "reclassify", new_label="HSIL", reviewer="bob")  # the latest decides
    store.add_review(int(ids[2]), "reject", reviewer="bob")  # NILM 0.2

    def selected(selection: ExportSelection) -> tuple[list[int], list[int], list[int]]:
        """Detection ids written to GeoJSON (by feature order), CSV and COCO (by score) under a selection."""
        doc = to_geojson(store, sid, None, selection=selection)
        to_csv(store, sid, tmp_path / "s.csv", selection=selection)
        rows = [int(r["detection_id"]) for r in csv.DictReader((tmp_path / "s.csv").open())]
        score_to_id = {round(s, 4): int(i) for s, i in zip(SCORES, ids, strict=True)}
        geo = [score_to_id[round(f["properties"]["measurements"]["score"], 4)] for f in doc["features"]]
        coco = [score_to_id[round(r["score"], 4)] for r in to_coco_results(store, sid, selection=selection)]
        return geo, rows, coco

    def check(selection: ExportSelection, expected: list[int]) -> None:
        geo, rows, coco = selected(selection)
        assert geo == rows == coco == [int(ids[i]) for i in expected], selection

    check(ExportSelection(), [0, 1, 2])
    check(ExportSelection(min_score=0.6), [0, 1])
    check(ExportSelection(classes={"HSIL"}), [0, 1])  # the reclassified ASC-US counts as HSIL
    check(ExportSelection(classes=["ASC-US", "LSIL"]), [])  # ... and no longer as what the model said
    check(ExportSelection(classes={"NILM"}), [2])
    check(ExportSelection(reviewed_only=True), [1, 2])
    check(ExportSelection(reviewed_only=True, rejected=False), [1])
    check(ExportSelection(reviewed_only=True, classes={"HSIL"}, min_score=0.7), [])
    # the CSV's review_class and the GeoJSON's classification are the reviewed class; COCO keeps the model's
    to_csv(store, sid, tmp_path / "all.csv")
    row = next(r for r in csv.DictReader((tmp_path / "all.csv").open()) if int(r["detection_id"]) == ids[1])
    assert (row["class"], row["review_class"], row["reviewer"]) == ("ASC-US", "HSIL", "bob")
    coco = to_coco_results(store, sid, selection=ExportSelection(classes={"HSIL"}))
    assert [r["category_id"] for r in coco] == [4, 2]
    store.close()


def test_selection_rejects_unknown_classes_and_bad_values(tmp_path: Path) -> None:
    store, sid, _ = _fill(tmp_path / "run.sqlite")
    with pytest.raises(ValueError, match=r"no class \['SCC'\] in this run; classes are"):
        to_csv(store, sid, tmp_path / "x.csv", selection=ExportSelection(classes={"SCC", "HSIL"}))
    with pytest.raises(TypeError, match="not the string 'HSIL'"):
        ExportSelection(classes="HSIL")
    with pytest.raises(ValueError, match="finite"):
        ExportSelection(min_score=float("nan"))
    assert ExportSelection(classes=["HSIL", "HSIL"]).classes == frozenset({"HSIL"})
    store.close()
