"""Category statistics of a detection dataset, as pure functions over plain records (numpy and Python only).

Every per-class count, LVIS frequency group and repeat factor in cytolt is computed here, so samplers, copy-paste,
the mmdet glue and the synthetic datasets agree on what each count means.

Glossary
    labels               (M,) int, one class index 0..C-1 per instance (annotation), in any order.
    image_ids            (M,) the image each instance belongs to (any hashable id; ints in COCO).
    image_classes        length N (images): entry i is the collection of class indices present in image i
                         (an image without annotations has an empty one).
    instances_per_class  (C,) int64, instances (annotations) of each class: LVIS's ``instance_count``, NorCal's N_c.
    images_per_class     (C,) int64, images holding at least one instance of each class: LVIS's ``image_count``.
    image_freq           (C,) float64, images_per_class / N: f_c of repeat-factor sampling, f_j of EQL.
    frequency group      LVIS's 'r' (rare, 1-10 training images), 'c' (common, 11-100), 'f' (frequent, > 100).
    repeat factor        class: r_c = max(1, sqrt(t / f_c)); image: r_i = max of r_c over its classes, 1 if none.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FREQUENCY_GROUPS",
    "LVIS_COMMON_MAX",
    "LVIS_RARE_MAX",
    "RFS_THR",
    "CategoryStats",
    "class_repeat_factors",
    "coco_category_stats",
    "images_per_class",
    "instances_per_class",
    "lvis_frequency",
    "repeat_factors",
]

# LVIS (Gupta et al., CVPR 2019, Sec. 3): rare = 1-10 training images, common = 11-100, frequent = more than 100.
LVIS_RARE_MAX = 10
LVIS_COMMON_MAX = 100
FREQUENCY_GROUPS = ("r", "c", "f")
# Repeat-factor threshold t (Gupta et al., CVPR 2019, Sec. 4; mmdet's and detectron2's default).
RFS_THR = 0.001
# f_c of a class in no image: keeps its r_c finite (sqrt(t / 1e-12)); no image ever takes it.
_MIN_FREQ = 1e-12


def instances_per_class(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) int64 number of instances of each class among ``labels`` ((M,) class indices in [0, C))."""
    labels = _check_labels(labels, num_classes)
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def images_per_class(
    labels: Sequence[int] | np.ndarray, image_ids: Sequence[Hashable] | np.ndarray, num_classes: int
) -> np.ndarray:
    """(C,) int64 number of distinct images that hold each class; instance i is in image ``image_ids[i]``."""
    labels = _check_labels(labels, num_classes)
    if len(image_ids) != len(labels):
        raise ValueError(f"labels and image_ids differ in length: {len(labels)} and {len(image_ids)}")
    pairs = set(zip(labels.tolist(), _as_list(image_ids), strict=True))  # one (class, image) pair per image
    return instances_per_class([label for label, _ in pairs], num_classes)


def lvis_frequency(
    num_images: int, *, rare_max: int = LVIS_RARE_MAX, common_max: int = LVIS_COMMON_MAX
) -> str:
    """LVIS frequency group of a class seen in ``num_images`` training images: 'r', 'c' or 'f'.

    ``rare_max`` and ``common_max`` are the largest image counts of the rare and common groups (LVIS: 10, 100).
    """
    if num_images <= rare_max:
        return "r"
    if num_images <= common_max:
        return "c"
    return "f"


def class_repeat_factors(
    images_per_class: Sequence[int] | np.ndarray, num_images: int, *, thr: float = RFS_THR
) -> np.ndarray:
    """(C,) float64 LVIS repeat factor of each class, ``r_c = max(1, sqrt(thr / f_c))`` with ``f_c`` the
    fraction of the ``num_images`` images that hold class c (Gupta et al., CVPR 2019, Sec. 4)."""
    _check_thr(thr)
    freq = np.asarray(images_per_class, np.float64) / float(num_images)
    return np.maximum(1.0, np.sqrt(thr / np.maximum(freq, _MIN_FREQ)))


def repeat_factors(image_classes: Sequence[Iterable[int]], thr: float = RFS_THR) -> np.ndarray:
    """(N,) float64 repeat factor of each image for repeat-factor sampling (Gupta et al., CVPR 2019, Sec. 4).

    An image's factor is the largest ``r_c`` (:func:`class_repeat_factors`) of the classes it holds, 1 for an image
    with none. ``thr`` is the threshold t: classes in fewer than a fraction t of the images are oversampled.
    """
    _check_thr(thr)
    per_image = [sorted(set(classes)) for classes in image_classes]
    if not per_image:
        return np.zeros(0, np.float64)
    labels = [c for classes in per_image for c in classes]
    num_classes = max(labels, default=-1) + 1
    image_index = [i for i, classes in enumerate(per_image) for _ in classes]
    r_c = class_repeat_factors(images_per_class(labels, image_index, num_classes), len(per_image), thr=thr)
    return np.array([max((r_c[c] for c in classes), default=1.0) for classes in per_image], np.float64)


@dataclass(frozen=True)
class CategoryStats:
    """Per-category statistics of one annotation file, in the order of its ``categories`` list (the label order).

    ``images_per_class`` and ``instances_per_class`` are counted from the annotations, not read from the
    categories' own ``image_count`` / ``instance_count`` fields, which a derived file (a held-out split) leaves stale.
    ``frequency`` is the file's own LVIS group per category ('' where it has none).
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    frequency: tuple[str, ...]
    images_per_class: np.ndarray
    instances_per_class: np.ndarray
    num_images: int

    @property
    def image_freq(self) -> np.ndarray:
        """(C,) float64, fraction of the images that hold each category (EQL's ``f_j``; 0 without images)."""
        return self.images_per_class / max(self.num_images, 1)


def coco_category_stats(dataset: Mapping[str, Any], *, source: str = "dataset") -> CategoryStats:
    """Category statistics of a COCO / LVIS dataset dict (every annotation counts, crowd ones included).

    ``source`` names the dataset in error messages (its file, usually).
    """
    categories = dataset.get("categories")
    if not categories:
        raise ValueError(f"{source}: no categories")
    index = {c["id"]: k for k, c in enumerate(categories)}
    labels, image_ids = [], []
    for ann in dataset.get("annotations", []):
        k = index.get(ann["category_id"])
        if k is None:
            raise ValueError(
                f"{source}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}"
            )
        labels.append(k)
        image_ids.append(ann["image_id"])
    return CategoryStats(
        ids=tuple(int(c["id"]) for c in categories),
        names=tuple(str(c["name"]) for c in categories),
        frequency=tuple(str(c.get("frequency", "")) for c in categories),
        images_per_class=images_per_class(labels, image_ids, len(categories)),
        instances_per_class=instances_per_class(labels, len(categories)),
        num_images=len(dataset.get("images", [])),
    )


def _check_labels(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    out = np.asarray(labels, np.int64).reshape(-1)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        raise ValueError(
            f"labels must be class indices in [0, {num_classes}); got [{out.min()}, {out.max()}]"
        )
    return out


def _as_list(values: Sequence[Hashable] | np.ndarray) -> list[Hashable]:
    # numpy scalars hash like Python ones, but tolist() keeps set() of pairs cheap for large arrays
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _check_thr(thr: float) -> None:
    if not (thr > 0 and math.isfinite(thr)):
        raise ValueError(f"thr must be a positive fraction of the images; got {thr}")
