"""Per-class AP read from a finished evaluator's precision array (lvis-api or pycocotools).

A class's AP is the mean of its precision over all IoU thresholds and recall points, area range "all"
(and, for COCO, the largest maxDets), skipping the -1 entries the evaluators write where a class has no
ground truth: the same reduction both libraries apply to the whole table, restricted to one class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolt.evaluate._common import DetectionsLike, GtLike
from cytolt.evaluate.lvis import LVIS_MAX_DETS

EVALUATORS = ("lvis", "coco")


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def per_class_ap_from_eval(ev: Any) -> dict[str, float]:
    """Per-class AP from a finished ``lvis.LVISEval`` or ``pycocotools.cocoeval.COCOeval``.

    Precision shapes: LVIS (T iou, R recall, K class, A area); COCO (T, R, K, A, M maxDets).
    Returns {class name: AP}, -1 for a class without ground truth, in category-id order.
    """
    if not getattr(ev, "eval", None) or "precision" not in ev.eval:
        raise ValueError("evaluator has no precision array: run evaluate() and accumulate() first")
    precision = np.asarray(ev.eval["precision"])
    if precision.ndim == 4:  # lvis-api
        cats = ev.lvis_gt.load_cats(ev.params.cat_ids)
        per_k = [precision[:, :, k, 0] for k in range(len(cats))]
    elif precision.ndim == 5:  # pycocotools
        cats = ev.cocoGt.loadCats(ev.params.catIds)
        per_k = [precision[:, :, k, 0, -1] for k in range(len(cats))]
    else:
        raise ValueError(f"unexpected precision array of shape {precision.shape}")
    names = [str(c.get("name", c["id"])) for c in cats]
    if len(set(names)) != len(names):
        raise ValueError("category names are not unique; per-class AP is keyed by name")
    return {name: _mean_valid(p) for name, p in zip(names, per_k, strict=True)}


def per_class_ap(
    gt: GtLike,
    detections: DetectionsLike,
    *,
    evaluator: str = "lvis",
    iou_type: str = "bbox",
    max_dets: int = LVIS_MAX_DETS,
) -> dict[str, float]:
    """Per-class AP (IoU 0.50:0.95) under LVIS (federated, ``max_dets`` per image) or COCO rules.

    ``max_dets`` applies to ``evaluator="lvis"`` only; COCO keeps its 100 per image and class.
    """
    if evaluator == "lvis":
        from cytolt.evaluate.lvis import run_lvis

        ev = run_lvis(gt, detections, iou_type=iou_type, max_dets=max_dets)
    elif evaluator == "coco":
        from cytolt.evaluate.coco import run_coco

        ev = run_coco(gt, detections, iou_type=iou_type)
    else:
        raise ValueError(f"evaluator must be one of {', '.join(map(repr, EVALUATORS))}; got {evaluator!r}")
    return per_class_ap_from_eval(ev)
