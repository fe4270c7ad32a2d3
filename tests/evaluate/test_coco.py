"""coco_eval against pycocotools itself."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest

from cytolt.evaluate import coco_eval, lvis_eval
from tests.evaluate._eval_cases import (
    imperfect_detections,
    perfect_detections,
    random_lvis_case,
    with_box_masks,
    write_json,
)


def cocoeval_direct(gt_path, dets, iou_type="bbox"):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def as_coco(gt: dict) -> dict:
    """Plain COCO ground truth: iscrowd added, LVIS lists left in place (pycocotools ignores them)."""
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        ann["iscrowd"] = 0
    return gt


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools(tmp_path, seed):
    gt, dets = random_lvis_case(seed)
    gt = as_coco(gt)
    ours = coco_eval(gt, dets)
    ref = cocoeval_direct(write_json(tmp_path / "gt.json", gt), dets)
    assert list(ours) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@100", "ARs@100",
                          "ARm@100", "ARl@100"]  # fmt: skip
    assert list(ours.values()) == pytest.approx(list(ref), abs=1e-12)
    assert 0 < ours["AP"] < 1


def test_segm_and_paths_equal_pycocotools(tmp_path, lvis_gt):
    gt_path = write_json(tmp_path / "gt.json", as_coco(lvis_gt))
    for iou_type in ("bbox", "segm"):
        dets = imperfect_detections() if iou_type == "bbox" else with_box_masks(imperfect_detections())
        det_path = write_json(tmp_path / f"dets_{iou_type}.json", dets)
        ours = coco_eval(gt_path, det_path, iou_type=iou_type)
        ref = cocoeval_direct(gt_path, dets, iou_type=iou_type)
        assert list(ours.values()) == pytest.approx(list(ref), abs=1e-12)


def test_lvis_ground_truth_is_scored_without_federated_rules(lvis_gt):
    # hsil in image 3 is unverified: LVIS ignores it, COCO counts it as a false positive
    dets = [
        *perfect_detections(),
        {"image_id": 3, "category_id": 3, "bbox": [5.0, 5.0, 30.0, 30.0], "score": 0.99},
    ]
    assert coco_eval(lvis_gt, perfect_detections())["AP"] == pytest.approx(1.0)
    assert coco_eval(lvis_gt, dets)["AP"] < 1.0
    assert lvis_eval(lvis_gt, dets)["AP"] == pytest.approx(1.0)


def test_empty_detections(lvis_gt):
    res = coco_eval(lvis_gt, [])
    assert res["AP"] == 0.0 and res["AR@100"] == 0.0
