"""Loading and checking ground truth and detections for the evaluators.

Glossary
    gt          a COCO or LVIS ground-truth dataset: a dict with "images", "annotations" and "categories",
                or the path of its JSON file. LVIS adds per image "neg_category_ids" and
                "not_exhaustive_category_ids", and per category "frequency" in {"r", "c", "f"}.
    detections  a results list in the COCO/LVIS format, one dict per detection:
                {"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}
                (plus "segmentation" as RLE for iou_type="segm"), or the path of its JSON file.
    bbox        [x, y, w, h] in pixels of the evaluated image (level-0 pixels for crops of a slide).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cytolt.category_stats import FREQUENCY_GROUPS

GtLike = str | Path | Mapping[str, Any]
DetectionsLike = Sequence[Mapping[str, Any]] | str | Path

IOU_TYPES = ("bbox", "segm")


def check_iou_type(iou_type: str) -> None:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {', '.join(map(repr, IOU_TYPES))}; got {iou_type!r}")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} file {path} is not valid JSON: {err}") from err


def load_gt(gt: GtLike, *, lvis: bool) -> tuple[dict[str, Any], str]:
    """Return a private copy of the ground-truth dataset and a name for it in error messages.

    The evaluators write flags ("ignore", "_ignore") into the annotations they are given, so a dict passed
    in is deep-copied and the caller's object stays untouched. With ``lvis=True`` the LVIS-only fields are
    required; otherwise the COCO fields are required and a missing "iscrowd" defaults to 0 so that LVIS
    ground truth can also be scored the COCO way.
    """
    if isinstance(gt, str | Path):
        source = str(gt)
        dataset = _read_json(Path(gt), "ground-truth")
    elif isinstance(gt, Mapping):
        source = "ground-truth dict"
        dataset = copy.deepcopy(dict(gt))
    else:
        raise TypeError(f"gt must be a path or a dict; got {type(gt).__name__}")
    if not isinstance(dataset, dict):
        raise ValueError(f"{source}: expected a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"{source}: missing list {key!r}")
    for ann in dataset["annotations"]:
        missing = [k for k in ("id", "image_id", "category_id", "bbox", "area") if k not in ann]
        if missing:
            raise ValueError(f"{source}: annotation {ann.get('id', '?')} lacks {missing}")
        if not lvis:
            ann.setdefault("iscrowd", 0)
    if lvis:
        for img in dataset["images"]:
            missing = [k for k in ("id", "neg_category_ids", "not_exhaustive_category_ids") if k not in img]
            if missing:
                raise ValueError(f"{source}: image {img.get('id', '?')} lacks {missing} (LVIS format)")
        for cat in dataset["categories"]:
            if cat.get("frequency") not in FREQUENCY_GROUPS:
                raise ValueError(
                    f"{source}: category {cat.get('id', '?')} needs 'frequency' in {FREQUENCY_GROUPS} "
                    f"(LVIS format); got {cat.get('frequency')!r}"
                )
    return dataset, source


def _copy_detection(det: Mapping[str, Any]) -> dict[str, Any]:
    """A copy the evaluators may write into: the dict, its box and its mask (RLE dict or polygon lists).

    The evaluators add or replace keys ("id", "area", "segmentation", "rle") and never write inside the
    other values, so this is as safe as ``copy.deepcopy`` at a fraction of its cost (deepcopy was 60% of
    the fast engine's time on 10,000 detections).
    """
    out = dict(det)
    box = out.get("bbox")
    if type(box) is list:  # exact type checks: isinstance against the ABCs cost a third of this copy
        out["bbox"] = box.copy()
    seg = out.get("segmentation")
    if seg is None:
        return out
    if isinstance(seg, Mapping):
        out["segmentation"] = dict(seg)
    elif isinstance(seg, list):
        out["segmentation"] = [list(poly) if isinstance(poly, list) else poly for poly in seg]
    return out


def load_detections(
    detections: DetectionsLike, gt: Mapping[str, Any], source: str, *, iou_type: str
) -> list[dict[str, Any]]:
    """Return a private copy of the detections after checking them against the ground truth.

    lvis-api and pycocotools add "id", "area" and "segmentation" to the result dicts they are handed,
    so the caller's list is copied. Image and category ids must exist in ``gt``: an unknown id is almost
    always a label-mapping bug (0-based labels against 1-based category ids), so it is an error here
    rather than a silently lower AP.
    """
    if isinstance(detections, str | Path):
        det_source = str(detections)
        dets = _read_json(Path(detections), "detections")
        if not isinstance(dets, list):
            raise ValueError(f"detections file {det_source}: expected a JSON list of detections")
    elif isinstance(detections, Sequence):
        det_source = "detections list"
        dets = list(detections)
    else:
        raise TypeError(f"detections must be a path or a list of dicts; got {type(detections).__name__}")
    needed = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for i, det in enumerate(dets):
        if type(det) is not dict and not isinstance(det, Mapping):
            raise ValueError(f"{det_source}: detection {i} is a {type(det).__name__}, not a dict")
        dets[i] = det = _copy_detection(det)
        missing = [k for k in needed if k not in det]
        if missing:
            raise ValueError(f"{det_source}: detection {i} lacks {missing} (iou_type={iou_type!r})")
    if iou_type == "segm":  # polygons are rasterised at the image size
        sizeless = [img["id"] for img in gt["images"] if "width" not in img or "height" not in img]
        if sizeless:
            raise ValueError(
                f"{source}: images {sizeless[:10]} lack width/height, needed for iou_type='segm'"
            )
    img_ids = {img["id"] for img in gt["images"]}
    cat_ids = {cat["id"] for cat in gt["categories"]}
    bad_imgs = sorted({d["image_id"] for d in dets} - img_ids)
    if bad_imgs:
        raise ValueError(f"{det_source}: image ids {bad_imgs[:10]} are not in {source}")
    bad_cats = sorted({d["category_id"] for d in dets} - cat_ids)
    if bad_cats:
        raise ValueError(
            f"{det_source}: category ids {bad_cats[:10]} are not in {source} "
            f"(its ids are {sorted(cat_ids)[:10]}...; are labels 0-based instead of category ids?)"
        )
    return dets


def sorted_categories(gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Categories sorted by id: the order of the evaluators' class axis and of 0-based labels."""
    return sorted(gt["categories"], key=lambda c: c["id"])


def category_names(gt: GtLike) -> list[str]:
    """Class names in category-id order, the order of ``confusion_matrix`` rows and of 0-based labels."""
    dataset, _ = load_gt(gt, lvis=False) if not isinstance(gt, Mapping) else (gt, "")
    return [str(c.get("name", c["id"])) for c in sorted_categories(dataset)]
