"""Loading and checking of ground truth and detections (cytolt/evaluate/_common.py)."""

from __future__ import annotations

import pytest

from cytolt.evaluate import category_names, coco_eval
from cytolt.evaluate._common import load_detections, load_gt
from tests.evaluate._eval_cases import write_json


def test_category_names_from_dict_and_path(tmp_path, lvis_gt):
    lvis_gt["categories"].reverse()
    assert category_names(lvis_gt) == ["nilm", "ascus", "hsil", "scc"]  # id order, not file order
    assert category_names(write_json(tmp_path / "gt.json", lvis_gt)) == ["nilm", "ascus", "hsil", "scc"]


def test_load_gt_copies_and_defaults_iscrowd(lvis_gt):
    data, source = load_gt(lvis_gt, lvis=False)
    assert source == "ground-truth dict"
    assert all(a["iscrowd"] == 0 for a in data["annotations"])
    assert "iscrowd" not in lvis_gt["annotations"][0]


def test_broken_files_are_named(tmp_path, lvis_gt):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        coco_eval(bad, [])
    dets = write_json(tmp_path / "dets.json", {"image_id": 1})
    with pytest.raises(ValueError, match="dets.json: expected a JSON list"):
        coco_eval(lvis_gt, dets)
    del lvis_gt["annotations"][2]["area"]
    with pytest.raises(ValueError, match="annotation 3 lacks \\['area'\\]"):
        load_gt(lvis_gt, lvis=False)


def test_lvis_fields_required(lvis_gt):
    lvis_gt["categories"][1]["frequency"] = "x"
    with pytest.raises(ValueError, match="category 2 needs 'frequency'"):
        load_gt(lvis_gt, lvis=True)
    load_gt(lvis_gt, lvis=False)  # COCO scoring does not need it


def test_detection_fields(lvis_gt):
    with pytest.raises(ValueError, match="detection 0 lacks \\['score'\\]"):
        load_detections(
            [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], lvis_gt, "gt", iou_type="bbox"
        )
    with pytest.raises(TypeError, match="path or a list"):
        load_detections(42, lvis_gt, "gt", iou_type="bbox")  # type: ignore[arg-type]


def test_segm_needs_image_sizes(lvis_gt):
    del lvis_gt["images"][1]["height"]
    with pytest.raises(ValueError, match="images \\[2\\] lack width/height"):
        load_detections([], lvis_gt, "gt", iou_type="segm")
