"""COCO AP with pycocotools' ``COCOeval`` rules (Lin et al. 2014, "Microsoft COCO: Common Objects in Context").

COCO rules: every image is exhaustively annotated, so every unmatched detection is a false positive;
AP averages IoU 0.50:0.95 and 101 recall points with at most 100 detections per image (per class, as
``COCOeval`` applies maxDets per image and category). LVIS ground truth is accepted too (its missing
``iscrowd`` counts as 0); its federated lists are then ignored, which is what COCO scoring means.

Two engines give the same numbers: ``engine="fast"`` (the default) runs faster-coco-eval's C++ ``COCOeval``,
``engine="reference"`` runs pycocotools (tests/evaluate hold them equal to 1e-6; docs/evaluate.md has the speed).
This module never computes AP itself: it hands the data to an evaluator and returns its numbers.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from cytolt.evaluate import _fast
from cytolt.evaluate._common import DetectionsLike, GtLike, check_iou_type, load_detections, load_gt

# Names of COCOeval.stats, in its order (pycocotools cocoeval.py, summarize()).
COCO_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR@1",
    "AR@10",
    "AR@100",
    "ARs@100",
    "ARm@100",
    "ARl@100",
)


def run_coco(gt: GtLike, detections: DetectionsLike, *, iou_type: str = "bbox", engine: str = "fast") -> Any:
    """Run COCO evaluation and return the finished evaluator: pycocotools' ``COCOeval`` (``"reference"``) or
    faster-coco-eval's ``COCOeval_faster`` (``"fast"``); both have ``.stats`` and the precision array
    (T, R, K, A, M) in ``.eval["precision"]``."""
    check_iou_type(iou_type)
    _fast.check_engine(engine)
    gt_data, source = load_gt(gt, lvis=False)
    dets = load_detections(detections, gt_data, source, iou_type=iou_type)
    if engine == "fast":
        return _fast.run_fast(gt_data, dets, iou_type=iou_type)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # COCOeval prints its progress and table; the numbers are returned instead.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:
            # loadRes fails on [] (reads anns[0]); an empty results set is scored as no detections.
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": gt_data["images"],
                "categories": gt_data["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_eval(
    gt: GtLike, detections: DetectionsLike, *, iou_type: str = "bbox", engine: str = "fast"
) -> dict[str, float]:
    """COCO metrics exactly as pycocotools computes them.

    Args:
        gt: COCO (or LVIS) ground truth, dict or JSON path.
        detections: results list (image_id, category_id, bbox xywh, score; segmentation RLE for segm) or
            its JSON path.
        iou_type: "bbox" or "segm".
        engine: "fast" (faster-coco-eval, default) or "reference" (pycocotools); same numbers.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@100", "ARs@100", "ARm@100",
        "ARl@100"} as floats in [0, 1], -1 where undefined (pycocotools' convention).
    """
    ev = run_coco(gt, detections, iou_type=iou_type, engine=engine)
    # faster-coco-eval's .stats holds the same 12 values in pycocotools' order.
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, ev.stats, strict=True)}
