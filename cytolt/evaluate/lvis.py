"""LVIS AP with lvis-api's rules (``lvis`` 0.5.3), federated rules included, and a detectron2-style evaluator.

lvis-api (Gupta et al. 2019, "LVIS: A Dataset for Large Vocabulary Instance Segmentation") scores a
federated dataset: per image, a detection of a class that is neither annotated in the image nor listed in
its ``neg_category_ids`` is dropped, and an unmatched detection of a class in the image's
``not_exhaustive_category_ids`` is ignored instead of counted false. AP averages 10 IoU thresholds
(0.50:0.95) and 101 recall points; at most ``max_dets`` (300) detections per image, the highest scores across
classes, are kept. APr/APc/APf average the classes whose ``frequency`` is "r"/"c"/"f". A value of -1 means
"undefined" (no class with ground truth in that group), exactly as lvis-api reports it.

Two engines give the same numbers (tests/evaluate hold them equal to 1e-6): ``engine="fast"`` (the default)
runs faster-coco-eval's C++ evaluator with the LVIS cap applied first (``_fast``; docs/evaluate.md has the
speed-up); ``engine="reference"`` runs lvis-api itself. Ground truth with ``"ignore"`` flags always takes the reference path.
This module never computes AP itself: it hands the data to an evaluator and returns its numbers.

Glossary
    boxes   (N, 4) float, xyxy, pixels of the evaluated image (``LVISEvaluator.process``)
    labels  (N,) int, 0-based index into the ground truth's categories sorted by id
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cytolt._compat import patch_numpy_for_lvis
from cytolt.evaluate import _fast
from cytolt.evaluate._common import (
    DetectionsLike,
    GtLike,
    check_iou_type,
    load_detections,
    load_gt,
    sorted_categories,
)
from cytolt.evaluate.precision import per_class_ap_from_eval

# The official LVIS limit (Gupta et al. 2019, Sec. 5; lvis-api's LVISResults default).
LVIS_MAX_DETS = 300


@functools.cache
def _lvis_api() -> tuple[type, type, type]:
    """Import lvis-api once, after restoring ``np.float`` that 0.5.3 still uses.

    Returns (InMemoryLVIS, LVISResults, LVISEval). lvis 0.5.3's ``LVIS`` only takes a file path, so the
    subclass builds the same index from a dict already in memory.
    """
    patch_numpy_for_lvis()
    from lvis import LVIS, LVISEval, LVISResults

    class InMemoryLVIS(LVIS):
        def __init__(self, dataset: dict[str, Any]) -> None:
            self.logger = logging.getLogger("lvis.lvis")
            self.dataset = dataset
            self._create_index()

    return InMemoryLVIS, LVISResults, LVISEval


def _empty_results(lvis_gt: Any) -> Any:
    """An ``LVISResults`` holding no detections; lvis-api's own constructor fails on [] (reads results[0])."""
    _, LVISResults, _ = _lvis_api()
    res = LVISResults.__new__(LVISResults)
    res.logger = logging.getLogger("lvis.results")
    res.dataset = {**lvis_gt.dataset, "annotations": []}
    res._create_index()
    return res


def _check_max_dets(max_dets: int) -> None:
    if not isinstance(max_dets, int) or (max_dets < 1 and max_dets != -1):
        raise ValueError(f"max_dets must be a positive int, or -1 for no per-image limit; got {max_dets!r}")


def run_lvis(
    gt: GtLike,
    detections: DetectionsLike,
    *,
    iou_type: str = "bbox",
    max_dets: int = LVIS_MAX_DETS,
    engine: str = "fast",
) -> Any:
    """Run LVIS evaluation and return the finished evaluator (precision array in ``.eval["precision"]``).

    ``engine="reference"`` (or ground truth with ``"ignore"`` flags): an ``lvis.LVISEval``, precision
    (T, R, K, A); ``max_dets`` goes to ``LVISResults`` (the per-image cap, -1 for none) and to
    ``params.max_dets``, which lvis-api 0.5.3 uses only to name the recall key ``AR@{max_dets}``.
    ``engine="fast"``: a faster-coco-eval ``COCOeval_faster``, precision (T, R, K, A, 1), same numbers.
    Read either with ``lvis_results`` or ``precision.per_class_ap_from_eval``.
    """
    check_iou_type(iou_type)
    _check_max_dets(max_dets)
    _fast.check_engine(engine)
    gt_data, source = load_gt(gt, lvis=True)
    dets = load_detections(detections, gt_data, source, iou_type=iou_type)
    if engine == "fast" and not _fast.has_ignore_flags(gt_data):
        return _fast.run_fast(gt_data, dets, iou_type=iou_type, lvis_max_dets=max_dets)
    InMemoryLVIS, LVISResults, LVISEval = _lvis_api()
    lvis_gt = InMemoryLVIS(gt_data)
    with warnings.catch_warnings():
        # lvis 0.5.3 calls the deprecated Logger.warn on every list of results it is given.
        warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
        lvis_dt = LVISResults(lvis_gt, dets, max_dets=max_dets) if dets else _empty_results(lvis_gt)
    ev = LVISEval(lvis_gt, lvis_dt, iou_type=iou_type)
    ev.params.max_dets = max_dets
    ev.run()
    return ev


def lvis_results(ev: Any, max_dets: int) -> dict[str, float]:
    """lvis-api's result dict (AP ... APf, ``AR@{max_dets}`` ...) from a finished ``run_lvis`` evaluator."""
    if hasattr(ev, "get_results"):  # lvis.LVISEval
        return {key: float(value) for key, value in ev.get_results().items()}
    return _fast.lvis_results(ev, max_dets)


def lvis_eval(
    gt: GtLike,
    detections: DetectionsLike,
    *,
    iou_type: str = "bbox",
    max_dets: int = LVIS_MAX_DETS,
    engine: str = "fast",
) -> dict[str, float]:
    """LVIS metrics exactly as lvis-api computes them.

    Args:
        gt: LVIS ground truth (dict or JSON path), see ``cytolt.evaluate._common``.
        detections: results list (dicts with image_id, category_id, bbox xywh, score; segmentation RLE for
            ``iou_type="segm"``) or its JSON path. An empty list scores 0 for every class with ground truth.
        iou_type: "bbox" or "segm".
        max_dets: detections kept per image, highest scores across classes (300 is LVIS's rule);
            -1 keeps all.
        engine: "fast" (faster-coco-eval, default) or "reference" (lvis-api); same numbers.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@{max_dets}",
        "ARs@{max_dets}", "ARm@{max_dets}", "ARl@{max_dets}"} as floats in [0, 1], -1 where undefined.
    """
    ev = run_lvis(gt, detections, iou_type=iou_type, max_dets=max_dets, engine=engine)
    return lvis_results(ev, max_dets)


def _to_numpy(x: Any, dtype: type, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on the GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {arr.shape}")
    return arr


class LVISEvaluator:
    """Collects one image's predictions at a time and scores them the LVIS way (detectron2's pattern).

    ``reset()`` forgets what was collected, ``process(...)`` adds one image, ``evaluate()`` returns
    ``lvis_eval``'s dict (always with AP, APr, APc, APf) plus ``"AP-{class name}"`` per class when
    ``per_class=True``; ``engine`` as in ``lvis_eval``. Labels are 0-based indices into the ground truth's
    categories sorted by id, the convention of mmdet and detectron2 heads.
    """

    def __init__(
        self,
        gt: GtLike,
        *,
        iou_type: str = "bbox",
        max_dets: int = LVIS_MAX_DETS,
        per_class: bool = False,
        engine: str = "fast",
    ) -> None:
        check_iou_type(iou_type)
        _check_max_dets(max_dets)
        _fast.check_engine(engine)
        self._gt, self._source = load_gt(gt, lvis=True)
        self._cat_ids = [c["id"] for c in sorted_categories(self._gt)]
        self._img_ids = {img["id"] for img in self._gt["images"]}
        self.iou_type = iou_type
        self.max_dets = max_dets
        self.per_class = per_class
        self.engine = engine
        self._results: list[dict[str, Any]] = []

    @property
    def num_classes(self) -> int:
        return len(self._cat_ids)

    def reset(self) -> None:
        self._results = []

    def process(
        self,
        image_id: int,
        boxes: Any,
        scores: Any,
        labels: Any,
        *,
        masks: Sequence[Mapping[str, Any]] | np.ndarray | None = None,
    ) -> None:
        """Add one image's detections.

        Args:
            image_id: the image's id in the ground truth.
            boxes: (N, 4) xyxy in the image's pixels (numpy or torch).
            scores: (N,) confidence.
            labels: (N,) int in [0, num_classes).
            masks: for ``iou_type="segm"``: (N, H, W) bool masks, or N COCO RLE dicts.
        """
        if image_id not in self._img_ids:
            raise ValueError(f"image_id {image_id!r} is not in {self._source}")
        boxes_np = _to_numpy(boxes, np.float64, "boxes", 2).reshape(-1, 4)
        scores_np = _to_numpy(scores, np.float64, "scores", 1)
        labels_np = _to_numpy(labels, np.int64, "labels", 1)
        n = len(boxes_np)
        if len(scores_np) != n or len(labels_np) != n:
            raise ValueError(
                f"boxes, scores, labels disagree in length: {n}, {len(scores_np)}, {len(labels_np)}"
            )
        if n and (labels_np.min() < 0 or labels_np.max() >= self.num_classes):
            raise ValueError(
                f"labels must be 0-based class indices in [0, {self.num_classes}); "
                f"got range [{labels_np.min()}, {labels_np.max()}]"
            )
        rles = self._encode_masks(masks, n) if self.iou_type == "segm" else None
        xywh = boxes_np.copy()
        xywh[:, 2:] -= xywh[:, :2]
        for i in range(n):
            det: dict[str, Any] = {
                "image_id": image_id,
                "category_id": self._cat_ids[labels_np[i]],
                "bbox": [float(v) for v in xywh[i]],
                "score": float(scores_np[i]),
            }
            if rles is not None:
                det["segmentation"] = rles[i]
            self._results.append(det)

    def _encode_masks(self, masks: Sequence[Mapping[str, Any]] | np.ndarray | None, n: int) -> list[Any]:
        if masks is None:
            raise ValueError("iou_type='segm' needs masks: (N, H, W) bool array or N RLE dicts")
        if isinstance(masks, np.ndarray) or hasattr(masks, "detach"):
            import pycocotools.mask as mask_utils

            arr = _to_numpy(masks, np.uint8, "masks", 3)
            rles = list(mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0)))) if len(arr) else []
            for rle in rles:
                rle["counts"] = rle["counts"].decode("ascii")  # JSON-safe, as COCO results files store it
        else:
            rles = [dict(m) for m in masks]
        if len(rles) != n:
            raise ValueError(f"got {len(rles)} masks for {n} boxes")
        return rles

    @property
    def results(self) -> list[dict[str, Any]]:
        """The collected detections in the LVIS results format (a copy)."""
        return [dict(r) for r in self._results]

    def evaluate(self) -> dict[str, float]:
        ev = run_lvis(
            self._gt, self._results, iou_type=self.iou_type, max_dets=self.max_dets, engine=self.engine
        )
        out = lvis_results(ev, self.max_dets)
        if self.per_class:
            out.update({f"AP-{name}": ap for name, ap in per_class_ap_from_eval(ev).items()})
        return out
