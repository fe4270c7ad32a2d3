"""Fixed AP: LVIS AP without the per-image cap (Dave et al. 2021).

Dave, Dollár, Ramanan, Kirillov, Girshick, "Evaluating Large-Vocabulary Object Detectors: The Devil is in
the Details" (2021), show that LVIS's 300-detections-per-image cap makes AP depend on how scores compare
*across* classes: a detector that spends its 300 slots on frequent classes loses rare-class recall even when
each class's ranking is good. Fixed AP removes the per-image cap and instead keeps the top 10,000
detections per class over the whole dataset, so each class is scored on its own ranking. The LVIS 2021
challenge adopted the same limits (lvis-api's later ``max_dets_per_cat=10000, max_dets_per_im=-1``).

Here the per-class selection is done first (on the raw results, before the federated filtering, as
lvis-api does it), then the LVIS evaluator runs with ``max_dets=-1`` (no per-image limit): faster-coco-eval
by default, lvis-api 0.5.3 with ``engine="reference"`` (the same numbers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from cytolt.evaluate._common import DetectionsLike, GtLike, check_iou_type, load_detections, load_gt
from cytolt.evaluate.lvis import lvis_results, run_lvis

# Dave et al. 2021: top 10,000 detections per class over the dataset (the LVIS 2021 challenge rule too).
FIXED_AP_DETS_PER_CLASS = 10_000


def top_k_per_class(detections: Sequence[Mapping[str, Any]], k: int) -> list[dict[str, Any]]:
    """Keep the ``k`` highest-scoring detections of each category over the whole dataset.

    Equal scores keep their input order (stable sort), like lvis-api's own limits. The result is grouped
    by category; order does not matter to the evaluator.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (detections per class) must be a positive int; got {k!r}")
    by_cat: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for det in detections:
        by_cat[det["category_id"]].append(det)
    kept: list[dict[str, Any]] = []
    for dets in by_cat.values():
        kept.extend(dict(d) for d in sorted(dets, key=lambda d: d["score"], reverse=True)[:k])
    return kept


def fixed_ap(
    gt: GtLike,
    detections: DetectionsLike,
    *,
    iou_type: str = "bbox",
    dets_per_class: int = FIXED_AP_DETS_PER_CLASS,
    engine: str = "fast",
) -> dict[str, float]:
    """Fixed AP of Dave et al. 2021: top ``dets_per_class`` per class over the dataset, no per-image cap.

    Returns the same keys as ``lvis_eval`` (AP, AP50, AP75, APs, APm, APl, APr, APc, APf) with the recall
    keys named after the limit, as later lvis-api versions name them: "AR@10000/cat", "ARs@10000/cat", ...
    ``engine``: "fast" (faster-coco-eval, default) or "reference" (lvis-api).
    """
    check_iou_type(iou_type)
    gt_data, source = load_gt(gt, lvis=True)
    dets = load_detections(detections, gt_data, source, iou_type=iou_type)
    kept = top_k_per_class(dets, dets_per_class)
    ev = run_lvis(gt_data, kept, iou_type=iou_type, max_dets=-1, engine=engine)
    suffix = f"@{dets_per_class}/cat"
    # lvis-api 0.5.3 names recall keys after params.max_dets, which is -1 here ("AR@-1").
    return {key.replace("@-1", suffix): value for key, value in lvis_results(ev, -1).items()}
