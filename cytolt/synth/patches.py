"""Long-tailed patch datasets in COCO format with LVIS fields.

Layout written by :func:`make_patch_dataset`::

    OUT_DIR/images/000001.jpg ...         one RGB image per patch
    OUT_DIR/annotations.json              COCO + LVIS (or annotations_{train,val,test}.json with ``split``)

Every image's ``file_name`` and ``coco_url`` are ``images/<file>``: pycocotools and mmdet's ``CocoDataset``
join ``file_name`` to the image prefix; mmdet's ``LVISV1Dataset`` derives the file name from ``coco_url``
(stripping ``http://images.cocodataset.org/``, absent here); detectron2's LVIS loader takes the last two path
parts of ``coco_url``. So with ``data_root=OUT_DIR`` all of them load with ``data_prefix=dict(img='')``.

Instances: boxes ``bbox`` [x, y, w, h] (COCO, pixels, equal to the box of the mask), masks ``segmentation`` as
compressed RLE (pycocotools), ``area`` = mask pixel count, ``iscrowd`` 0. Annotation is exhaustive: every
category absent from an image is listed in its ``neg_category_ids`` and ``not_exhaustive_category_ids`` is empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from cytolt import __version__
from cytolt.category_stats import (
    LVIS_COMMON_MAX,
    LVIS_RARE_MAX,
    images_per_class,
    instances_per_class,
    lvis_frequency,
)
from cytolt.synth import cells
from cytolt.synth.classes import CLASS_DEFINITIONS, CLASSES, SUPERCATEGORY
from cytolt.synth.render import (
    Illumination,
    Stain,
    SynthObject,
    Textures,
    mask_box,
    object_mask,
    render_region,
)

SPLIT_NAMES = ("train", "val", "test")
LARGE_TEST = "test_large"  # the optional larger test split (``large_test``), its own annotation file
IMAGE_FORMATS = ("jpg", "png")

# Below this many training images the LVIS thresholds are scaled down proportionally (at 200 images they are
# 5 % and 50 % of the set), so that a small set still has all three groups; from 200 images on they apply as is.
LVIS_SCALE_BELOW = 200


def frequency_thresholds(num_images: int) -> tuple[int, int]:
    """(rare_max, common_max) image counts for a training set of ``num_images`` images.

    LVIS's 10 and 100 from 200 images up; below, ``max(1, round(num_images / 20))`` and
    ``max(rare_max + 1, round(num_images / 2))``.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1; got {num_images}")
    if num_images >= LVIS_SCALE_BELOW:
        return LVIS_RARE_MAX, LVIS_COMMON_MAX
    rare = max(1, round(num_images * LVIS_RARE_MAX / LVIS_SCALE_BELOW))
    common = max(rare + 1, round(num_images * LVIS_COMMON_MAX / LVIS_SCALE_BELOW))
    return rare, common


def long_tail_instances_per_class(
    num_images: int, *, imbalance: float, cells_per_image: float, classes: Sequence[str] = CLASSES
) -> dict[str, int]:
    """Instances to draw per class, head to tail, with head/tail = ``imbalance`` and a geometric decay between.

    The tail gets ``max(1, round(num_images * cells_per_image / S))`` instances, where S is the sum of the
    ratios ``imbalance ** (k / (C - 1))``; class k (0 = head) gets ``round(tail * imbalance ** ((C-1-k)/(C-1)))``.
    So the total is about ``num_images * cells_per_image`` unless the set is too small for one tail instance.
    """
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1 (head/tail instance ratio); got {imbalance}")
    c = len(classes)
    ratios = [imbalance ** ((c - 1 - k) / (c - 1)) if c > 1 else 1.0 for k in range(c)]
    tail = max(1, round(num_images * cells_per_image / sum(ratios)))
    return {name: round(tail * r) for name, r in zip(classes, ratios, strict=True)}


def long_tail_counts(num_classes: int, head: int, imbalance: float) -> list[int]:
    """Crops per class, head first: ``max(1, round(head * imbalance ** (-k / (K - 1))))`` for class k of K.

    Geometric from ``head`` down to ``head / imbalance``. (:func:`long_tail_instances_per_class` has the same decay but fixes the total and derives the head from it;
    a crop set and a z-stack set fix the head.)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if head < 1:
        raise ValueError(f"head must be >= 1; got {head}")
    if not imbalance >= 1:
        raise ValueError(f"imbalance must be >= 1 (head/tail ratio); got {imbalance}")
    if num_classes == 1:
        return [int(head)]
    return [max(1, round(head * imbalance ** (-k / (num_classes - 1)))) for k in range(num_classes)]


def _largest_remainder(total: int, fractions: Sequence[float]) -> list[int]:
    """Split the integer ``total`` by ``fractions`` (summing to 1) so that the parts sum to ``total``."""
    raw = [total * f for f in fractions]
    parts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (parts[i] - raw[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _check_split(split: Sequence[float] | None) -> tuple[float, ...] | None:
    if split is None:
        return None
    split = tuple(float(s) for s in split)
    if len(split) != 3 or any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0:
        raise ValueError(
            f"split must be three fractions (train, val, test) >= 0 summing to 1, train > 0; got {split}"
        )
    return split


def _place(
    rng: np.random.Generator, objects: list[SynthObject], size: int, *, tries: int = 30
) -> list[SynthObject]:
    """Move objects (built around the origin) into a ``size`` x ``size`` image, largest first.

    Each keeps at least three quarters of its box inside along each axis; among ``tries`` random positions the
    one overlapping placed objects least (bounding circles) wins, so a thin layer overlaps only a little.
    """
    order = sorted(range(len(objects)), key=lambda i: -_extent(objects[i]))
    placed: list[tuple[float, float, float]] = []
    out: list[SynthObject] = list(objects)
    for i in order:
        obj = objects[i]
        x0, y0, x1, y1 = obj.bbox
        w, h = x1 - x0, y1 - y0
        r = 0.4 * (w + h) / 2.0
        best, best_score = (size / 2.0, size / 2.0), math.inf
        for _ in range(tries):
            cx = rng.uniform(min(w / 4.0, size / 2.0), max(size - w / 4.0, size / 2.0))
            cy = rng.uniform(min(h / 4.0, size / 2.0), max(size - h / 4.0, size / 2.0))
            score = sum(max(0.0, r + pr - math.hypot(cx - px, cy - py)) / min(r, pr) for px, py, pr in placed)
            if score < best_score:
                best, best_score = (cx, cy), score
            if score < 0.15:
                break
        ox, oy = obj.center
        out[i] = obj.moved(best[0] - ox, best[1] - oy)
        placed.append((best[0], best[1], r))
    return out


def _extent(obj: SynthObject) -> float:
    x0, y0, x1, y1 = obj.bbox
    return (x1 - x0) * (y1 - y0)


def render_patch(
    labels: Sequence[str], *, size: int, mpp: float, seed: Sequence[int], textures: Textures | None = None
) -> tuple[np.ndarray, list[SynthObject]]:
    """Render one ``size`` x ``size`` field holding one object per entry of ``labels`` plus clutter.

    Returns (image (size, size, 3) uint8 RGB, the annotated objects in image px). ``seed`` seeds this image's
    own generator (e.g. ``(dataset_seed, image_index)``), so an image does not depend on the others.
    """
    rng = np.random.default_rng(list(seed))
    stain = Stain.sample(rng)
    if textures is None:
        textures = Textures(rng, mpp=mpp, period=max(256, size), max_window=size + 128)
    illumination = Illumination.sample(
        rng, period_px=rng.uniform(2.0, 4.0) * size, vignette=0.15, size=(size, size)
    )
    built = [cells.build(name, rng, 0.0, 0.0, mpp=mpp, stain=stain) for name in labels]
    objects = _place(rng, built, size)
    area_mm2 = (size * mpp / 1000.0) ** 2
    clutter = cells.build_clutter(rng, area_mm2, (0.0, 0.0, float(size), float(size)), mpp=mpp, stain=stain)
    # Texture offsets differ per image so a shared texture set never repeats the same pattern at the same place.
    offset = (int(v) for v in rng.integers(0, textures.period, size=2))
    image = render_region(
        objects + clutter,
        x0=0,
        y0=0,
        width=size,
        height=size,
        mpp=mpp,
        stain=stain,
        textures=textures,
        illumination=illumination,
        texture_offset=tuple(offset),
    )
    return image, objects


def _annotations(objects: Sequence[SynthObject], size: int) -> list[dict[str, Any]]:
    """COCO instance records (without ids) of the labelled objects: bbox from the mask, RLE, area."""
    out = []
    for obj in objects:
        mask = object_mask(obj, x0=0, y0=0, width=size, height=size)
        box = mask_box(mask)
        if box is None:  # entirely outside the image; placement keeps centres inside, so this is a guard
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x0, y0, x1, y1 = box
        out.append(
            {
                "category": obj.label,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": float(mask.sum()),
                "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
                "iscrowd": 0,
            }
        )
    return out


def _deal(rng: np.random.Generator, counts: dict[str, int], num_images: int) -> list[list[str]]:
    """Shuffle the instance labels and deal them round-robin to ``num_images`` images (equal loads +-1)."""
    labels = [name for name, n in counts.items() for _ in range(n)]
    order = rng.permutation(len(labels))
    bags: list[list[str]] = [[] for _ in range(num_images)]
    for j, k in enumerate(order):
        bags[j % num_images].append(labels[k])
    return bags


def make_patch_dataset(
    out_dir: str | Path,
    *,
    images: int,
    size: int = 512,
    imbalance: float = 100,
    seed: int = 0,
    split: tuple[float, float, float] | None = None,
    mpp: float = 0.5,
    cells_per_image: float | None = None,
    image_format: str = "jpg",
    quality: int = 90,
    rare_common_max: tuple[int, int] | None = None,
    large_test: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a long-tailed COCO/LVIS patch dataset of ``images`` RGB ``size`` x ``size`` patches.

    Per-class instance counts follow :func:`long_tail_instances_per_class` (head/tail = ``imbalance``, geometric in between);
    ``cells_per_image`` defaults to 12 per 512 x 512 px at 0.5 um/px, scaled by area. Patches are ``mpp``
    microns per pixel (0.5: an intermediate cell is ~70-110 px). With ``split`` = (train, val, test) fractions,
    every class is split in those proportions (train first) and ``annotations_{train,val,test}.json`` are written;
    else ``annotations.json``. LVIS ``frequency`` comes from the training images' counts with
    :func:`frequency_thresholds` (or ``rare_common_max`` = (rare_max, common_max)) and is the
    same in every split file, as in LVIS v1; ``image_count``/``instance_count`` are each file's own.

    ``large_test`` = (images, min_instances) adds a separate test split ``annotations_test_large.json`` of that
    many images (ids after the others'), drawn with the same long tail but every class raised to at least
    ``min_instances`` instances, so that tail-class AP rests on enough cells; the other splits' bytes do not change.

    Returns a summary: ``annotation_files`` (split -> path), ``instance_counts``, ``image_counts`` (train),
    ``frequency``, ``thresholds``, ``images``.
    """
    if images < 1:
        raise ValueError(f"images must be >= 1; got {images}")
    if size < 64:
        raise ValueError(f"size must be >= 64 px; got {size}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}; got {image_format!r}")
    if not 0.05 <= mpp <= 10:
        raise ValueError(f"mpp must be between 0.05 and 10 microns per pixel; got {mpp}")
    fractions = _check_split(split)
    splits = SPLIT_NAMES if fractions else ("all",)
    fracs = fractions or (1.0,)
    n_images = _largest_remainder(images, fracs)
    if any(n == 0 and f > 0 for n, f in zip(n_images, fracs, strict=True)):
        raise ValueError(f"split {fractions} leaves a split with no image for images={images}")
    if cells_per_image is None:
        cells_per_image = 12.0 * (size / 512.0) ** 2 * (0.5 / mpp) ** 2
    counts = long_tail_instances_per_class(images, imbalance=imbalance, cells_per_image=cells_per_image)
    per_image = sum(counts.values()) / images
    if per_image > 3 * cells_per_image:
        need = math.ceil(sum(counts.values()) / (3 * cells_per_image))
        raise ValueError(
            f"imbalance {imbalance} over {len(CLASSES)} classes needs at least {need} images of {size} px "
            f"(the tail class gets one instance, the head {imbalance:g}x more); got images={images}"
        )

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x5E7])
    per_split_counts = [dict.fromkeys(CLASSES, 0) for _ in splits]
    for name, n in counts.items():
        for s, k in enumerate(_largest_remainder(n, fracs)):
            per_split_counts[s][name] = k
    bags: list[tuple[str, list[str]]] = []
    for s, name in enumerate(splits):
        bags += [(name, bag) for bag in _deal(rng, per_split_counts[s], n_images[s])] if n_images[s] else []
    written = splits
    if large_test is not None:
        bags += _large_test_bags(large_test, imbalance=imbalance, cells_per_image=cells_per_image, seed=seed)
        written = (*splits, LARGE_TEST)

    # One texture set for the whole dataset; each image reads it at its own offset.
    textures = Textures(np.random.default_rng([seed, 0x7E4]), mpp=mpp, period=1024, max_window=size + 128)
    records: dict[str, dict[str, list]] = {s: {"images": [], "annotations": []} for s in written}
    ann_id = 0
    for index, (split_name, labels) in enumerate(
        tqdm(bags, desc="patches", unit="img", disable=not progress)
    ):
        image_id = index + 1
        image, objects = render_patch(labels, size=size, mpp=mpp, seed=(seed, image_id), textures=textures)
        file_name = f"images/{image_id:06d}.{image_format}"
        _write_image(out_dir / file_name, image, image_format, quality)
        anns = _annotations(objects, size)
        present = sorted({CLASSES.index(a["category"]) + 1 for a in anns})
        records[split_name]["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "coco_url": file_name,
                "width": size,
                "height": size,
                "neg_category_ids": [c for c in range(1, len(CLASSES) + 1) if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        for a in anns:
            ann_id += 1
            category = a.pop("category")
            records[split_name]["annotations"].append(
                {"id": ann_id, "image_id": image_id, "category_id": CLASSES.index(category) + 1, **a}
            )

    train = records[splits[0]]
    train_images_per_class = _images_per_class(train["annotations"])
    thresholds = rare_common_max or frequency_thresholds(len(train["images"]))
    frequency = {
        name: lvis_frequency(train_images_per_class[name], rare_max=thresholds[0], common_max=thresholds[1])
        for name in CLASSES
    }
    files = {}
    for split_name in written:
        rec = records[split_name]
        path = out_dir / ("annotations.json" if split_name == "all" else f"annotations_{split_name}.json")
        _write_json(path, _coco(rec, frequency, split_name, seed=seed, imbalance=imbalance, mpp=mpp))
        files[split_name] = str(path)
    return {
        "out_dir": str(out_dir),
        "images": images,
        "annotation_files": files,
        "instance_counts": {name: sum(c[name] for c in per_split_counts) for name in CLASSES},
        "image_counts": train_images_per_class,  # summary keys: cytolt synth's table reads them
        "frequency": frequency,
        "thresholds": thresholds,
    }


def _large_test_bags(
    large_test: tuple[int, int], *, imbalance: float, cells_per_image: float, seed: int
) -> list[tuple[str, list[str]]]:
    """Labels per image of the large test split: the long tail over its images, each class at least the minimum."""
    images, minimum = (int(v) for v in large_test)
    if images < 1 or minimum < 0:
        raise ValueError(f"large_test must be (images >= 1, min_instances >= 0); got {large_test}")
    counts = long_tail_instances_per_class(images, imbalance=imbalance, cells_per_image=cells_per_image)
    counts = {name: max(n, minimum) for name, n in counts.items()}
    # Its own random stream, so the train/val/test draws above stay as they were without the option.
    rng = np.random.default_rng([seed, 0x7E57])
    return [(LARGE_TEST, bag) for bag in _deal(rng, counts, images)]


def _images_per_class(annotations: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Class name -> images holding it; category ids are 1-based positions in ``CLASSES``."""
    labels = [a["category_id"] - 1 for a in annotations]
    counts = images_per_class(labels, [a["image_id"] for a in annotations], len(CLASSES))
    return dict(zip(CLASSES, counts.tolist(), strict=True))


def _instances_per_class(annotations: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Class name -> instances of it."""
    counts = instances_per_class([a["category_id"] - 1 for a in annotations], len(CLASSES))
    return dict(zip(CLASSES, counts.tolist(), strict=True))


def _coco(
    rec: dict[str, list], frequency: dict[str, str], split: str, *, seed: int, imbalance: float, mpp: float
) -> dict[str, Any]:
    image_count = _images_per_class(rec["annotations"])  # this file's own, named like the LVIS fields
    instance_count = _instances_per_class(rec["annotations"])
    categories = [
        {
            "id": k + 1,
            "name": name,
            "synonyms": [name],
            "def": CLASS_DEFINITIONS[name],
            "supercategory": SUPERCATEGORY[name],
            "frequency": frequency[name],
            "image_count": image_count[name],
            "instance_count": instance_count[name],
        }
        for k, name in enumerate(CLASSES)
    ]
    info = {
        "description": "cytolt synthetic cervical cytology (TCT) patches",
        "version": __version__,
        "split": split,
        "seed": seed,
        "imbalance": imbalance,
        "mpp": mpp,
    }
    return {
        "info": info,
        "licenses": [],
        "images": rec["images"],
        "annotations": rec["annotations"],
        "categories": categories,
    }


def _write_image(path: Path, image: np.ndarray, image_format: str, quality: int) -> None:
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        if image_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    ok, buf = cv2.imencode(f".{image_format}", image[:, :, ::-1], params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
