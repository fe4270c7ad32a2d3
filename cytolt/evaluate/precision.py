"""Per-class AP read from a finished evaluator's precision array (lvis-api, pycocotools or faster-coco-eval).

A class's AP is the mean of its precision over all IoU thresholds and recall points, area range "all"
(and, for COCO, the largest maxDets), skipping the -1 entries the evaluators write where a class has no
ground truth: the same reduction both libraries apply to the whole table, restricted to one class.

This module imports neither evaluator: ``lvis.LVISEvaluator`` and ``per_class.per_class_ap`` both read
their finished evaluator with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def per_class_ap_from_eval(ev: Any) -> dict[str, float]:
    """Per-class AP from a finished ``lvis.LVISEval``, ``pycocotools.cocoeval.COCOeval`` or faster-coco-eval
    ``COCOeval_faster`` (COCO or LVIS style).

    Precision shapes: lvis-api (T iou, R recall, K class, A area); the COCOeval pair (T, R, K, A, M maxDets),
    read at the largest maxDets.
    Returns {class name: AP}, -1 for a class without ground truth, in category-id order.
    """
    if not getattr(ev, "eval", None) or "precision" not in ev.eval:
        raise ValueError("evaluator has no precision array: run evaluate() and accumulate() first")
    precision = np.asarray(ev.eval["precision"])
    if precision.ndim == 4:  # lvis-api
        cats = ev.lvis_gt.load_cats(ev.params.cat_ids)
        per_k = [precision[:, :, k, 0] for k in range(len(cats))]
    elif precision.ndim == 5:  # pycocotools, faster-coco-eval
        cats = ev.cocoGt.loadCats(ev.params.catIds)
        per_k = [precision[:, :, k, 0, -1] for k in range(len(cats))]
    else:
        raise ValueError(f"unexpected precision array of shape {precision.shape}")
    names = [str(c.get("name", c["id"])) for c in cats]
    if len(set(names)) != len(names):
        raise ValueError("category names are not unique; per-class AP is keyed by name")
    return {name: _mean_valid(p) for name, p in zip(names, per_k, strict=True)}
