"""Per-class AP of a results list: run the LVIS or COCO evaluator (faster-coco-eval, or lvis-api / pycocotools
with ``engine="reference"``), then read each class's AP from its precision array
(``precision.per_class_ap_from_eval``).
"""

from __future__ import annotations

from cytolt.evaluate._common import DetectionsLike, GtLike
from cytolt.evaluate.coco import run_coco
from cytolt.evaluate.lvis import LVIS_MAX_DETS, run_lvis
from cytolt.evaluate.precision import per_class_ap_from_eval

EVALUATORS = ("lvis", "coco")


def per_class_ap(
    gt: GtLike,
    detections: DetectionsLike,
    *,
    evaluator: str = "lvis",
    iou_type: str = "bbox",
    max_dets: int = LVIS_MAX_DETS,
    engine: str = "fast",
) -> dict[str, float]:
    """Per-class AP (IoU 0.50:0.95) under LVIS (federated, ``max_dets`` per image) or COCO rules.

    ``max_dets`` applies to ``evaluator="lvis"`` only; COCO keeps its 100 per image and class.
    ``engine``: "fast" (faster-coco-eval, default) or "reference" (lvis-api / pycocotools).
    """
    if evaluator == "lvis":
        ev = run_lvis(gt, detections, iou_type=iou_type, max_dets=max_dets, engine=engine)
    elif evaluator == "coco":
        ev = run_coco(gt, detections, iou_type=iou_type, engine=engine)
    else:
        raise ValueError(f"evaluator must be one of {', '.join(map(repr, EVALUATORS))}; got {evaluator!r}")
    return per_class_ap_from_eval(ev)
