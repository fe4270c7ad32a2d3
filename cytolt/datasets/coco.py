"""COCO detection datasets as cytolt trains on them: checked before training, LVIS fields derived for plain COCO.

A lab's annotation tool exports plain COCO (``images``, ``annotations``, ``categories``). The long-tail metric
needs LVIS's extra fields (Gupta et al., CVPR 2019, Sec. 3), which for a dataset where every cell of every image
is annotated follow from the annotations themselves:

    neg_category_ids             per image: every category with no instance in it (exhaustive annotation);
    not_exhaustive_category_ids  per image: none;
    image_count, instance_count  per category, counted in the training split;
    frequency                    per category: 'r' (1-10 training images), 'c' (11-100), 'f' (> 100).

``check_coco`` finds what would stop or silently spoil a training run (a missing image file, a box outside its
image, an unknown category id, an empty split, a validation class the training split never shows) and names the
file and the entry, so the error comes in the first second rather than at the first evaluation.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytolt.category_stats import LVIS_COMMON_MAX, LVIS_RARE_MAX, coco_category_stats, lvis_frequency

__all__ = [
    "AnnotationError",
    "ClassRow",
    "check_coco",
    "check_splits",
    "class_table",
    "format_class_table",
    "is_lvis",
    "read_coco",
    "with_lvis_fields",
]

# A box may overhang its image by this much (pixels) before it is an error: exporters round outward.
BOX_TOLERANCE_PX = 1.0
_LVIS_IMAGE_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids")


class AnnotationError(ValueError):
    """A dataset file that cytolt cannot train or evaluate on; ``source`` is the file, ``entry`` the item."""

    def __init__(self, source: str | Path, entry: str, problem: str) -> None:
        self.source = str(source)
        self.entry = entry
        self.problem = problem
        where = f"{self.source}: {entry}" if entry else self.source
        super().__init__(f"{where}: {problem}")


def read_coco(path: str | Path) -> dict[str, Any]:
    """The JSON object of a COCO file; a missing or malformed file is an :class:`AnnotationError`."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "", "annotation file not found")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"line {err.lineno}", f"not valid JSON ({err.msg})") from err
    if not isinstance(doc, dict):
        raise AnnotationError(path, "", "expected a JSON object with images, annotations and categories")
    return doc


def is_lvis(doc: Mapping[str, Any]) -> bool:
    """True when every image carries LVIS's negative / not-exhaustive lists and every category a frequency."""
    images, categories = doc.get("images") or [], doc.get("categories") or []
    return all(all(k in img for k in _LVIS_IMAGE_FIELDS) for img in images) and all(
        "frequency" in c for c in categories
    )


def _entry(kind: str, index: int, item: Mapping[str, Any]) -> str:
    return f"{kind} {index} (id {item['id']})" if "id" in item else f"{kind} {index}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_categories(doc: Mapping[str, Any], source: str) -> None:
    seen_ids: set[Any] = set()
    seen_names: set[str] = set()
    for k, cat in enumerate(doc["categories"]):
        entry = _entry("category", k, cat)
        if not isinstance(cat, Mapping) or "id" not in cat or "name" not in cat:
            raise AnnotationError(source, entry, "a category needs 'id' and 'name'")
        if cat["id"] in seen_ids:
            raise AnnotationError(source, entry, f"duplicate category id {cat['id']}")
        if cat["name"] in seen_names:
            raise AnnotationError(source, entry, f"duplicate category name {cat['name']!r}")
        seen_ids.add(cat["id"])
        seen_names.add(cat["name"])


def _check_images(doc: Mapping[str, Any], source: str, image_root: Path | None) -> dict[Any, Mapping]:
    images: dict[Any, Mapping] = {}
    for k, img in enumerate(doc["images"]):
        entry = _entry("image", k, img)
        if not isinstance(img, Mapping) or "id" not in img:
            raise AnnotationError(source, entry, "an image needs an 'id'")
        if img["id"] in images:
            raise AnnotationError(source, entry, f"duplicate image id {img['id']}")
        for key in ("width", "height"):
            if key in img and not (_is_number(img[key]) and img[key] > 0):
                raise AnnotationError(source, entry, f"{key} must be a positive number; got {img[key]!r}")
        if image_root is not None:
            name = img.get("file_name")
            if not name:
                raise AnnotationError(source, entry, "no 'file_name'")
            if not (image_root / name).is_file():
                raise AnnotationError(source, entry, f"image file not found: {image_root / name}")
        images[img["id"]] = img
    return images


def _check_annotation(
    ann: Any, entry: str, source: str, images: Mapping[Any, Mapping], category_ids: set[Any]
) -> None:
    if not isinstance(ann, Mapping):
        raise AnnotationError(source, entry, "an annotation must be a JSON object")
    missing = [key for key in ("id", "image_id", "category_id", "bbox") if key not in ann]
    if missing:
        raise AnnotationError(source, entry, f"lacks {missing}")
    if ann["image_id"] not in images:
        raise AnnotationError(source, entry, f"image_id {ann['image_id']!r} is not an image of this file")
    if ann["category_id"] not in category_ids:
        raise AnnotationError(
            source,
            entry,
            f"unknown category_id {ann['category_id']!r}; the categories are {sorted(category_ids)}",
        )
    box = ann["bbox"]
    if not (isinstance(box, Sequence) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise AnnotationError(source, entry, f"bbox must be 4 finite numbers [x, y, w, h]; got {box!r}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise AnnotationError(source, entry, f"bbox {list(box)} has no area (w and h must be > 0)")
    img = images[ann["image_id"]]
    width, height = img.get("width"), img.get("height")
    tol = BOX_TOLERANCE_PX
    if width is not None and height is not None:
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise AnnotationError(
                source,
                entry,
                f"bbox {list(box)} lies outside its image {ann['image_id']!r} of {width} x {height} px",
            )


def check_coco(
    doc: Mapping[str, Any],
    *,
    source: str | Path = "dataset",
    image_root: str | Path | None = None,
    allow_empty: bool = False,
) -> None:
    """Raise :class:`AnnotationError` (file and entry named) unless ``doc`` is a COCO detection dataset cytolt
    can train or evaluate on.

    Checked: the three lists exist; ids are unique; every annotation has ``id``, ``image_id`` (an image of the
    file), ``category_id`` (a category of the file) and a ``bbox`` of 4 finite numbers with positive size lying
    inside its image (``BOX_TOLERANCE_PX`` of slack) when the image has a size; every image file exists under
    ``image_root`` when given; the file holds at least one image and one annotation unless ``allow_empty``.
    """
    source = str(source)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise AnnotationError(
                source, "", f"missing list {key!r} (a COCO file has images, annotations, categories)"
            )
    if not doc["categories"]:
        raise AnnotationError(source, "", "no categories")
    _check_categories(doc, source)
    images = _check_images(doc, source, Path(image_root) if image_root is not None else None)
    category_ids = {c["id"] for c in doc["categories"]}
    seen: set[Any] = set()
    for k, ann in enumerate(doc["annotations"]):
        entry = _entry("annotation", k, ann) if isinstance(ann, Mapping) else f"annotation {k}"
        _check_annotation(ann, entry, source, images, category_ids)
        if ann["id"] in seen:
            raise AnnotationError(source, entry, f"duplicate annotation id {ann['id']}")
        seen.add(ann["id"])
    if not allow_empty and (not doc["images"] or not doc["annotations"]):
        raise AnnotationError(
            source, "", f"empty split: {len(doc['images'])} images, {len(doc['annotations'])} annotations"
        )


def check_splits(
    train: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]], *, train_source: str
) -> None:
    """Raise :class:`AnnotationError` unless every other split (``{file: doc}``) has the training split's
    categories (same ids and names, any order) and shows no class the training split lacks."""
    train_cats = {c["id"]: c["name"] for c in train["categories"]}
    trained = {a["category_id"] for a in train["annotations"]}
    for source, doc in others.items():
        cats = {c["id"]: c["name"] for c in doc["categories"]}
        if cats != train_cats:
            diff = sorted(set(cats.items()) ^ set(train_cats.items()), key=str)
            raise AnnotationError(
                source, "categories", f"differ from the training split {train_source}'s: {diff[:6]}"
            )
        absent = sorted({a["category_id"] for a in doc["annotations"]} - trained)
        if absent:
            names = [cats[i] for i in absent]
            raise AnnotationError(
                source,
                "categories",
                f"classes {names} (ids {absent}) have instances here but none in the training split {train_source}",
            )


def with_lvis_fields(
    doc: Mapping[str, Any],
    *,
    train: Mapping[str, Any] | None = None,
    rare_max: int = LVIS_RARE_MAX,
    common_max: int = LVIS_COMMON_MAX,
) -> dict[str, Any]:
    """A copy of ``doc`` with the LVIS fields of an exhaustively annotated dataset (module docstring).

    Per-image fields already present are kept (an LVIS file passes through unchanged but for missing ones).
    ``train`` is the training split the category counts and frequency groups come from (LVIS defines them on
    the training set); ``None`` counts ``doc`` itself, for the training split.
    """
    out = copy.deepcopy(dict(doc))
    present: dict[Any, set[Any]] = {img["id"]: set() for img in out["images"]}
    for ann in out["annotations"]:
        present.setdefault(ann["image_id"], set()).add(ann["category_id"])
    all_ids = [c["id"] for c in out["categories"]]
    for img in out["images"]:
        img.setdefault("neg_category_ids", [c for c in all_ids if c not in present[img["id"]]])
        img.setdefault("not_exhaustive_category_ids", [])
    stats = coco_category_stats(train if train is not None else out, source="training split")
    counts = {
        cid: (int(n_img), int(n_inst))
        for cid, n_img, n_inst in zip(
            stats.ids, stats.images_per_class, stats.instances_per_class, strict=True
        )
    }
    for cat in out["categories"]:
        n_img, n_inst = counts.get(cat["id"], (0, 0))
        cat["image_count"] = n_img
        cat["instance_count"] = n_inst
        cat.setdefault("frequency", lvis_frequency(n_img, rare_max=rare_max, common_max=common_max))
    return out


@dataclass(frozen=True)
class ClassRow:
    """One class of a training split: its name, instances, images holding it, and LVIS frequency group."""

    name: str
    instances: int
    images: int
    group: str


def class_table(
    train: Mapping[str, Any], *, rare_max: int = LVIS_RARE_MAX, common_max: int = LVIS_COMMON_MAX
) -> list[ClassRow]:
    """Per-class counts of a training split in category-id order (the label order), with frequency groups."""
    stats = coco_category_stats(train, source="training split")
    order = sorted(range(len(stats.ids)), key=lambda k: stats.ids[k])
    return [
        ClassRow(
            name=stats.names[k],
            instances=int(stats.instances_per_class[k]),
            images=int(stats.images_per_class[k]),
            group=lvis_frequency(int(stats.images_per_class[k]), rare_max=rare_max, common_max=common_max),
        )
        for k in order
    ]


def format_class_table(
    rows: Sequence[ClassRow], *, rare_max: int = LVIS_RARE_MAX, common_max: int = LVIS_COMMON_MAX
) -> str:
    """The class table as aligned text, with the thresholds of the groups."""
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'class':<{width}}  instances  images  group"]
    lines += [f"{r.name:<{width}}  {r.instances:>9}  {r.images:>6}  {r.group}" for r in rows]
    groups = {g: sum(r.group == g for r in rows) for g in "rcf"}
    lines.append(
        f"groups by training images: rare (r) 1-{rare_max} or none: {groups['r']}, "
        f"common (c) {rare_max + 1}-{common_max}: {groups['c']}, frequent (f) > {common_max}: {groups['f']}"
    )
    return "\n".join(lines)
