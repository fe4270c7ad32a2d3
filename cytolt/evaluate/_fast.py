"""COCO and LVIS AP through faster-coco-eval (MiXaiLL76, C++ ``COCOeval``), held to the reference libraries' rules.

faster-coco-eval reimplements pycocotools' ``COCOeval`` with the matching and accumulation in C++, and with
``lvis_style=True`` applies LVIS's federated rules (Gupta et al. 2019): a detection of a class neither annotated
in the image nor in its ``neg_category_ids`` is dropped, and an unmatched detection of a class in its
``not_exhaustive_category_ids`` is ignored. Where it departs from lvis-api 0.5.3, this module makes the input
say what lvis-api would see, so the numbers are the same (tests/evaluate compare them to 1e-6):

- The cap. lvis-api keeps the ``max_dets`` (300) highest-scoring detections *per image, across classes*, and
  does so before the federated filtering (a dropped detection still used a slot). faster-coco-eval's
  ``maxDets`` caps per image *and class*. So the per-image cap is applied here first, exactly as lvis-api's
  ``LVISResults.limit_dets_per_image`` does it (stable sort by score, ties in input order), and faster-coco-eval
  gets a ``maxDets`` no (image, class) pair reaches.
- Crowds. lvis-api has no crowd regions (IoU with ``iscrowd=0`` everywhere), faster-coco-eval honours
  ``iscrowd``; the LVIS ground truth handed over has ``iscrowd=0``.
- An ``"ignore"`` flag on a ground-truth annotation is honoured by lvis-api and overwritten by faster-coco-eval;
  ``has_ignore_flags`` lets the caller keep the reference path for such ground truth.

COCO scoring needs no adaptation: faster-coco-eval gives pycocotools' numbers (maxDets 1/10/100 per image and
class, crowds, area ranges). This module never computes AP itself; it prepares the input and reads the result.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

ENGINES = ("fast", "reference")

# faster-coco-eval's summary keys -> lvis-api's result keys (the AR keys take the cap as a suffix).
_LVIS_KEYS = {
    "AP": "AP_all",
    "AP50": "AP_50",
    "AP75": "AP_75",
    "APs": "AP_small",
    "APm": "AP_medium",
    "APl": "AP_large",
    "APr": "APr",
    "APc": "APc",
    "APf": "APf",
    "AR@{}": "AR_all",
    "ARs@{}": "AR_small",
    "ARm@{}": "AR_medium",
    "ARl@{}": "AR_large",
}


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}")


def has_ignore_flags(gt: Mapping[str, Any]) -> bool:
    """Whether any ground-truth annotation carries a true ``"ignore"`` (lvis-api honours it, faster-coco-eval not)."""
    return any(ann.get("ignore") for ann in gt["annotations"])


def cap_per_image(detections: Sequence[dict[str, Any]], max_dets: int) -> list[dict[str, Any]]:
    """The ``max_dets`` highest-scoring detections of each image, across classes (lvis-api's LVIS cap).

    Same selection and order as lvis-api 0.5.3's ``limit_dets_per_image``: grouped by image in order of first
    appearance; an image over the cap is sorted by score (stable, so equal scores keep input order) and cut,
    an image within it keeps its order. ``max_dets=-1`` keeps everything.
    """
    if max_dets < 0:
        return list(detections)
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for det in detections:
        by_image[det["image_id"]].append(det)
    kept: list[dict[str, Any]] = []
    for dets in by_image.values():
        if len(dets) > max_dets:
            dets = sorted(dets, key=lambda d: d["score"], reverse=True)[:max_dets]
        kept.extend(dets)
    return kept


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval prints its progress and table through ``print_function``; the numbers are returned."""


def run_fast(
    gt: dict[str, Any], detections: list[dict[str, Any]], *, iou_type: str, lvis_max_dets: int | None = None
) -> Any:
    """Run faster-coco-eval and return the finished ``COCOeval_faster`` (``.eval["precision"]`` is (T, R, K, A, M)).

    Args:
        gt: a private, checked ground-truth dict (``_common.load_gt``); it is modified (flags, iscrowd).
        detections: a private, checked results list; modified (ids, areas), as pycocotools' ``loadRes`` does.
        iou_type: "bbox" or "segm".
        lvis_max_dets: None scores the COCO way; an int scores the LVIS way with that per-image cap
            (-1: none).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    lvis = lvis_max_dets is not None
    if lvis:
        for ann in gt["annotations"]:
            ann["iscrowd"] = 0
        detections = cap_per_image(detections, lvis_max_dets)
    coco_gt = COCO(gt, print_function=_quiet)
    coco_dt = coco_gt.loadRes(detections)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, lvis_style=lvis, print_function=_quiet)
    if lvis:
        # lvis-api accumulates every detection left after the per-image cap; no (image, class) pair may be cut.
        per_pair = Counter((d["image_id"], d["category_id"]) for d in detections)
        ev.params.maxDets = [max(per_pair.values(), default=1)]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def lvis_results(ev: Any, max_dets: int) -> dict[str, float]:
    """lvis-api's result dict (same keys, same order) read from a finished LVIS-style ``COCOeval_faster``."""
    stats = ev.stats_as_dict
    return {key.format(max_dets): float(stats[name]) for key, name in _LVIS_KEYS.items()}
