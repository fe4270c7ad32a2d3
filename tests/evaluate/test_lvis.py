"""lvis_eval and LVISEvaluator against lvis-api itself, and LVIS's federated rules on a hand-built set."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from cytolt._compat import patch_numpy_for_lvis
from cytolt.evaluate import LVISEvaluator, lvis_eval
from tests.evaluate._eval_cases import (
    imperfect_detections,
    perfect_detections,
    random_lvis_case,
    with_box_masks,
    write_json,
)

# lvis 0.5.3 calls the deprecated Logger.warn in the reference runs below
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300"]


def lvis_api_direct(gt_path, dets: list[dict[str, Any]], iou_type: str = "bbox", max_dets: int = 300) -> dict:
    """The reference: lvis-api used the documented way, from a file."""
    patch_numpy_for_lvis()
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(str(gt_path))
    res = LVISResults(gt, copy.deepcopy(dets), max_dets=max_dets)
    ev = LVISEval(gt, res, iou_type=iou_type)
    ev.params.max_dets = max_dets
    ev.run()
    return dict(ev.get_results())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_lvis_api_on_random_sets(tmp_path, seed):
    gt, dets = random_lvis_case(seed)
    ours = lvis_eval(gt, dets)
    ref = lvis_api_direct(write_json(tmp_path / "gt.json", gt), dets)
    assert set(KEYS) <= set(ours)
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    # the case is not degenerate: a mix of hits and misses in at least two frequency groups
    assert 0 < ours["AP"] < 1
    assert sum(ours[k] > -1 for k in ("APr", "APc", "APf")) >= 2


def test_paths_and_small_max_dets_equal_lvis_api(tmp_path):
    gt, dets = random_lvis_case(3)
    gt_path = write_json(tmp_path / "gt.json", gt)
    det_path = write_json(tmp_path / "dets.json", dets)
    ours = lvis_eval(gt_path, det_path, max_dets=2)
    ref = lvis_api_direct(gt_path, dets, max_dets=2)
    assert "AR@2" in ours
    assert ours == pytest.approx(ref, abs=1e-12)
    # the cap matters on this set, so max_dets really reached lvis-api
    assert ours["AR@2"] < lvis_eval(gt_path, det_path)["AR@300"]


def test_segm_equals_lvis_api(tmp_path, lvis_gt):
    dets = with_box_masks(imperfect_detections())
    ours = lvis_eval(lvis_gt, dets, iou_type="segm")
    ref = lvis_api_direct(write_json(tmp_path / "gt.json", lvis_gt), dets, iou_type="segm")
    assert ours == pytest.approx(ref, abs=1e-12)
    assert 0 < ours["AP"] < 1


def test_perfect_detections_score_one(lvis_gt):
    res = lvis_eval(lvis_gt, perfect_detections())
    for key in KEYS:
        assert res[key] == pytest.approx(1.0), key


def test_undefined_groups_are_minus_one(lvis_gt):
    # keep only the frequent class: no rare or common ground truth is left
    lvis_gt["annotations"] = [a for a in lvis_gt["annotations"] if a["category_id"] == 1]
    res = lvis_eval(lvis_gt, perfect_detections())
    assert res["APr"] == -1 and res["APc"] == -1
    assert res["APf"] == pytest.approx(1.0)


def test_unverified_class_is_ignored(lvis_gt):
    base = imperfect_detections()
    # hsil in image 3: neither annotated there nor in its neg list -> lvis-api drops it
    unverified = {"image_id": 3, "category_id": 3, "bbox": [5.0, 5.0, 30.0, 30.0], "score": 0.99}
    # the same false positive in image 1, where hsil is a verified negative -> it must count
    verified_neg = {**unverified, "image_id": 1}
    ref = lvis_eval(lvis_gt, base)
    assert lvis_eval(lvis_gt, [*base, unverified]) == ref
    hurt = lvis_eval(lvis_gt, [*base, verified_neg])
    # one hsil object, found second after a higher-scoring false positive: AP = 1/2
    assert hurt["APr"] == pytest.approx(0.5)
    assert ref["APr"] == pytest.approx(1.0)


def test_not_exhaustive_unmatched_detection_is_not_false(lvis_gt):
    base = imperfect_detections()
    # ascus in image 3 is annotated but not exhaustively: an unmatched ascus there is ignored
    extra = {"image_id": 3, "category_id": 2, "bbox": [300.0, 10.0, 40.0, 40.0], "score": 0.99}
    ref = lvis_eval(lvis_gt, base)
    assert lvis_eval(lvis_gt, [*base, extra]) == ref
    # in image 1 ascus is exhaustively annotated: the same detection is a false positive
    hurt = lvis_eval(lvis_gt, [*base, {**extra, "image_id": 1}])
    assert hurt["APc"] < ref["APc"]


def test_empty_detections_score_zero(lvis_gt):
    res = lvis_eval(lvis_gt, [])
    for key in KEYS:
        assert res[key] in (0.0, -1.0), key
    assert res["AP"] == 0.0 and res["APr"] == 0.0  # hsil has ground truth and was never found


def test_inputs_are_not_mutated(lvis_gt):
    dets = imperfect_detections()
    gt_before, dets_before = json.dumps(lvis_gt), json.dumps(dets)
    lvis_eval(lvis_gt, dets)
    assert json.dumps(lvis_gt) == gt_before and json.dumps(dets) == dets_before


def test_errors_name_the_cause(tmp_path, lvis_gt):
    with pytest.raises(ValueError, match="'bbox', 'segm'"):
        lvis_eval(lvis_gt, [], iou_type="keypoints")
    with pytest.raises(ValueError, match="category ids \\[0\\]"):
        lvis_eval(lvis_gt, [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.5}])
    with pytest.raises(ValueError, match="image ids \\[99\\]"):
        lvis_eval(lvis_gt, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}])
    with pytest.raises(ValueError, match="max_dets"):
        lvis_eval(lvis_gt, [], max_dets=0)
    coco_like = copy.deepcopy(lvis_gt)
    del coco_like["images"][0]["neg_category_ids"]
    path = write_json(tmp_path / "coco_like.json", coco_like)
    with pytest.raises(ValueError, match=f"{path}.*neg_category_ids"):
        lvis_eval(path, [])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        lvis_eval(tmp_path / "missing.json", [])


def _as_arrays(dets: list[dict[str, Any]], image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mine = [d for d in dets if d["image_id"] == image_id]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]).reshape(-1, 4)
    scores = np.array([d["score"] for d in mine])
    labels = np.array([d["category_id"] - 1 for d in mine])  # category ids 1..4 -> labels 0..3
    return boxes, scores, labels


def test_evaluator_equals_lvis_eval():
    gt, dets = random_lvis_case(4)
    ev = LVISEvaluator(gt, per_class=True)
    for img in gt["images"]:
        ev.process(img["id"], *_as_arrays(dets, img["id"]))
    out = ev.evaluate()
    ref = lvis_eval(gt, dets)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-9), key
    assert {f"AP-c{c}" for c in range(1, 6)} <= set(out)


def test_evaluator_reset_and_empty(lvis_gt):
    ev = LVISEvaluator(lvis_gt)
    out = ev.evaluate()
    assert {"AP", "APr", "APc", "APf"} <= set(out) and out["AP"] == 0.0
    ev.process(2, *_as_arrays(perfect_detections(), 2))
    assert ev.evaluate()["APr"] == pytest.approx(1.0)
    ev.reset()
    assert ev.results == [] and ev.evaluate()["APr"] == 0.0


def test_evaluator_accepts_torch_and_checks_labels(lvis_gt):
    import torch

    boxes, scores, labels = _as_arrays(perfect_detections(), 1)
    ev = LVISEvaluator(lvis_gt)
    ev.process(1, torch.from_numpy(boxes).float(), torch.from_numpy(scores), torch.from_numpy(labels))
    assert len(ev.results) == 3
    with pytest.raises(ValueError, match="0-based"):
        ev.process(1, boxes, scores, np.full_like(labels, 4))  # 4 classes: labels 0..3
    with pytest.raises(ValueError, match="image_id 42"):
        ev.process(42, boxes, scores, labels)


def test_evaluator_segm_masks_equal_lvis_eval(lvis_gt):
    boxes, scores, labels = _as_arrays(perfect_detections(), 1)
    masks = np.zeros((len(boxes), 400, 400), dtype=bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int), strict=True):
        m[y1:y2, x1:x2] = True
    ev = LVISEvaluator(lvis_gt, iou_type="segm")
    ev.process(1, boxes, scores, labels, masks=masks)
    ref = lvis_eval(lvis_gt, ev.results, iou_type="segm")
    assert ev.evaluate() == ref
    assert ref["APf"] > 0  # the masks matched image 1's polygons


def test_import_stays_light():
    code = (
        "import sys, cytolt.evaluate; "
        "heavy = [m for m in ('lvis', 'pycocotools', 'faster_coco_eval', 'mmdet', 'mmengine', 'mmcv', 'napari',"
        " 'matplotlib', 'torch')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
