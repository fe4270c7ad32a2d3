"""Write a mini LVIS v1 dataset (simple shapes, a few images) that the configs in configs/lvis run on unchanged.

Layout (mmdet's ``LVISV1Dataset`` layout, the same as the real data root; see lvis_tools.py)::

    OUT/annotations/lvis_v1_train.json, lvis_v1_val.json              LVIS v1 format
    OUT/annotations/lvis_v1_train_cdb.json, lvis_v1_cdb_heldout.json   CDB's held-out split (lvis_tools)
    OUT/train2017/000000000001.jpg ...   the file each image's coco_url names
    OUT/val2017/...                      (one val image lives in train2017/, as LVIS v1 val has COCO train images)

What it keeps of LVIS's structure:

- categories carry ``frequency`` r/c/f, ``image_count`` and ``instance_count`` from the train split; the groups
  follow LVIS v1's proportions (337 rare, 461 common, 405 frequent of 1203). The group thresholds are LVIS's
  10 / 100 training images scaled to the train split's size (``cytolt.synth.frequency_thresholds``).
- images carry ``neg_category_ids`` (a random half of the absent categories: verified absent) and
  ``not_exhaustive_category_ids`` (a present category with one more, unannotated instance drawn in the image,
  so lvis-api's "unmatched detection is ignored" rule is exercised); the other absent categories are
  unverified, so detections of them are ignored (the federated rule).
- masks are polygons (``segmentation: [[x1, y1, x2, y2, ...]]``); ``bbox`` is the polygon's box and ``area``
  the polygon's pixel area as pycocotools rasterises it.

Each category is a shape (triangle ... disc) in a colour, drawn with no overlap on a noisy grey background.

Usage::

    python scripts/lvis/make_mini_lvis.py data/mini_lvis                      # 12 classes, 8 + 4 images, 128 px
    python scripts/lvis/make_mini_lvis.py data/mini_lvis --config configs/lvis/mask_rcnn_r50_fpn_rfs_1x.py \
        --config-out work_dirs/mini/mask_rcnn_r50_fpn_rfs_1x.py               # that config, on the mini set
    cytolt train work_dirs/mini/mask_rcnn_r50_fpn_rfs_1x.py
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from cytolt.synth import frequency_thresholds, lvis_frequency


def _sibling(name: str) -> ModuleType:
    """Import ``<name>.py`` from this script's folder (scripts/lvis is not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lvis_tools = _sibling("lvis_tools")

# LVIS v1 train categories per group: 337 rare, 461 common, 405 frequent (LVIS v1 release statistics).
LVIS_V1_GROUPS = {"r": 337, "c": 461, "f": 405}
# (name, vertices): a regular polygon; the disc is a 24-gon.
SHAPES = (("triangle", 3), ("square", 4), ("pentagon", 5), ("hexagon", 6), ("octagon", 8), ("disc", 24))
COLORS = {  # RGB
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 180),
}
MAX_CLASSES = len(SHAPES) * len(COLORS)


def category_names(num_classes: int) -> list[str]:
    """``shape_colour`` names: all shapes in the first colour, then the next colour, ..."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}]; got {num_classes}")
    return [f"{SHAPES[k % len(SHAPES)][0]}_{list(COLORS)[k // len(SHAPES)]}" for k in range(num_classes)]


def group_sizes(num_classes: int) -> dict[str, int]:
    """Categories per frequency group, in LVIS v1's proportions (largest remainder), each group >= 1."""
    if num_classes < 3:
        raise ValueError(
            f"num_classes must be >= 3 so that rare, common and frequent all exist; got {num_classes}"
        )
    total = sum(LVIS_V1_GROUPS.values())
    raw = {g: num_classes * n / total for g, n in LVIS_V1_GROUPS.items()}
    sizes = {g: max(1, math.floor(r)) for g, r in raw.items()}
    for g in sorted(raw, key=lambda g: sizes[g] - raw[g]):  # largest remainder first
        if sum(sizes.values()) >= num_classes:
            break
        sizes[g] += 1
    while sum(sizes.values()) > num_classes:  # the max(1, ...) floor overshot: take from the largest group
        sizes[max(sizes, key=sizes.get)] -= 1
    return sizes


def _polygon(center: tuple[float, float], radius: float, vertices: int, angle: float) -> np.ndarray:
    t = angle + 2 * math.pi * np.arange(vertices) / vertices
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


class _Canvas:
    """One image being drawn: non-overlapping discs reserve room for each shape."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.size = size
        noise = rng.normal(0, 6, (size, size, 1))
        self.image = np.clip(200 + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
        self.discs: list[tuple[float, float, float]] = []

    def place(self, vertices: int, color: tuple[int, int, int]) -> np.ndarray | None:
        """Draw a shape where it overlaps nothing; its (K, 2) polygon, or None when the image is full."""
        scale = self.size / 128
        for attempt in range(60):
            radius = self.rng.uniform(7, 16) * scale * (0.7 if attempt >= 30 else 1.0)
            cx, cy = self.rng.uniform(radius + 1, self.size - radius - 1, size=2)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (radius + r + 2) ** 2 for x, y, r in self.discs):
                self.discs.append((cx, cy, radius))
                poly = _polygon((cx, cy), radius, vertices, self.rng.uniform(0, 2 * math.pi))
                cv2.fillPoly(self.image, [np.round(poly).astype(np.int32)], color, lineType=cv2.LINE_AA)
                return poly
        return None


def _annotation(
    poly: np.ndarray, *, ann_id: int, image_id: int, category_id: int, size: int
) -> dict[str, Any]:
    flat = [round(float(v), 2) for v in poly.reshape(-1)]
    rle = mask_utils.merge(mask_utils.frPyObjects([flat], size, size))
    x0, y0 = (float(v) for v in poly.min(axis=0))
    x1, y1 = (float(v) for v in poly.max(axis=0))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [flat],
        "area": float(mask_utils.area(rle)),
        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
    }


def _plan_train(rng: np.random.Generator, groups: list[str], num_images: int) -> list[dict[int, int]]:
    """Per train image, {category index: instances}: each category in a number of images within its group."""
    rare_max, common_max = frequency_thresholds(num_images)
    ranges = {"r": (1, rare_max), "c": (rare_max + 1, common_max), "f": (common_max + 1, num_images)}
    if ranges["f"][0] > num_images:
        raise ValueError(f"{num_images} train images leave no room for frequent categories; use >= 3")
    plan: list[dict[int, int]] = [{} for _ in range(num_images)]
    for k, group in enumerate(groups):
        lo, hi = ranges[group]
        count = int(rng.integers(lo, hi + 1))
        for i in rng.choice(num_images, size=count, replace=False):
            plan[int(i)][k] = 1 + int(rng.random() < 0.3)
    return plan


def _plan_val(rng: np.random.Generator, groups: list[str], num_images: int) -> list[dict[int, int]]:
    """Per val image, {category index: instances}; rare, common and frequent each appear somewhere."""
    by_group = {g: [k for k, gk in enumerate(groups) if gk == g] for g in ("f", "c", "r")}
    plan: list[dict[int, int]] = []
    for i in range(num_images):
        picks = {int(rng.choice(by_group["fcr"[i % 3]]))}
        picks |= {int(k) for k in rng.choice(len(groups), size=int(rng.integers(1, 3)), replace=False)}
        plan.append({k: 1 + int(rng.random() < 0.3) for k in picks})
    if num_images < 3:  # fewer images than groups: put the missing groups into the first image
        for g in "fcr"[num_images:]:
            plan[0].setdefault(int(rng.choice(by_group[g])), 1)
    return plan


def _render_split(
    rng: np.random.Generator,
    plan: list[dict[int, int]],
    *,
    out_dir: Path,
    folders: list[str],
    first_image_id: int,
    first_ann_id: int,
    size: int,
    num_classes: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ann_id = first_ann_id
    for i, wanted in enumerate(plan):
        image_id = first_image_id + i
        canvas = _Canvas(rng, size)
        present: set[int] = set()
        for k, n in sorted(wanted.items()):
            vertices = SHAPES[k % len(SHAPES)][1]
            color = list(COLORS.values())[k // len(SHAPES)]
            for _ in range(n):
                poly = canvas.place(vertices, color)
                if poly is None:
                    continue
                annotations.append(
                    _annotation(poly, ann_id=ann_id, image_id=image_id, category_id=k + 1, size=size)
                )
                ann_id += 1
                present.add(k)
        # Every other image: one present category is "not exhaustively annotated": draw one more, unannotated.
        not_exhaustive = []
        if present and i % 2 == 0:
            k = int(rng.choice(sorted(present)))
            if canvas.place(SHAPES[k % len(SHAPES)][1], list(COLORS.values())[k // len(SHAPES)]) is not None:
                not_exhaustive = [k + 1]
        absent = [k + 1 for k in range(num_classes) if k not in present]
        negatives = (
            sorted(int(c) for c in rng.choice(absent, size=(len(absent) + 1) // 2, replace=False))
            if absent
            else []
        )
        file = f"{folders[i]}/{image_id:012d}.jpg"
        path = out_dir / file
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(canvas.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(
            {
                "id": image_id,
                "coco_url": lvis_tools.COCO_HOST + file,
                "flickr_url": "",
                "height": size,
                "width": size,
                "license": 1,
                "date_captured": "2026-01-01 00:00:00",
                "neg_category_ids": negatives,
                "not_exhaustive_category_ids": not_exhaustive,
            }
        )
    return images, annotations


def make_mini_lvis(
    out_dir: str | Path,
    *,
    num_classes: int = 12,
    train_images: int = 8,
    val_images: int = 4,
    size: int = 128,
    heldout: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the mini LVIS v1 set into ``out_dir`` (layout in the module docstring); returns a summary.

    Args:
        num_classes: categories (3 .. 30), split into rare/common/frequent in LVIS v1's proportions.
        train_images: train split size (>= 3); the r/c/f thresholds scale with it.
        val_images: val split size (>= 1).
        size: square image side in pixels.
        heldout: images of the CDB held-out split taken from train (default a quarter, at least 1).
        seed: everything (layout, shapes, noise, lists) follows from it.

    Returns:
        {"classes": names in label order, "frequency": {name: r/c/f}, "image_count": {name: n},
        "train": n images, "val": n images, "thresholds": (rare_max, common_max)}.
    """
    if train_images < 3 or val_images < 1:
        raise ValueError(f"need train_images >= 3 and val_images >= 1; got {train_images}, {val_images}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    names = category_names(num_classes)
    groups = [g for g, n in group_sizes(num_classes).items() for _ in range(n)]
    groups = [groups[i] for i in rng.permutation(num_classes)]  # LVIS orders categories by name, not group

    train_plan = _plan_train(rng, groups, train_images)
    val_plan = _plan_val(rng, groups, val_images)
    train_imgs, train_anns = _render_split(
        rng,
        train_plan,
        out_dir=out,
        folders=["train2017"] * train_images,
        first_image_id=1,
        first_ann_id=1,
        size=size,
        num_classes=num_classes,
    )
    # LVIS v1 val holds COCO val2017 images and some from train2017; keep one of the latter when there is room.
    val_folders = ["val2017"] * val_images
    if val_images >= 2:
        val_folders[-1] = "train2017"
    val_imgs, val_anns = _render_split(
        rng,
        val_plan,
        out_dir=out,
        folders=val_folders,
        first_image_id=train_images + 1,
        first_ann_id=len(train_anns) + 1,
        size=size,
        num_classes=num_classes,
    )

    thresholds = frequency_thresholds(train_images)
    image_count = [
        len({a["image_id"] for a in train_anns if a["category_id"] == k + 1}) for k in range(num_classes)
    ]
    instance_count = [sum(a["category_id"] == k + 1 for a in train_anns) for k in range(num_classes)]
    frequency = [lvis_frequency(n, rare_max=thresholds[0], common_max=thresholds[1]) for n in image_count]
    missing = {"r", "c", "f"} - set(frequency)
    if missing or 0 in image_count:
        raise RuntimeError(
            f"seed {seed}: the drawn set lacks groups {sorted(missing)} or has an unseen class"
        )
    categories = [
        {
            "id": k + 1,
            "name": name,
            "synset": f"{name}.n.01",
            "synonyms": [name],
            "def": f"a {name.replace('_', ' ')} drawn on a grey background",
            "frequency": frequency[k],
            "image_count": image_count[k],
            "instance_count": instance_count[k],
        }
        for k, name in enumerate(names)
    ]
    info = {
        "description": "mini LVIS v1 (cytolt scripts/lvis/make_mini_lvis.py)",
        "version": "1.0",
        "seed": seed,
    }
    licenses = [{"id": 1, "name": "CC0", "url": ""}]
    for split, imgs, anns in (("train", train_imgs, train_anns), ("val", val_imgs, val_anns)):
        data = {
            "info": info,
            "licenses": licenses,
            "images": imgs,
            "annotations": anns,
            "categories": categories,
        }
        lvis_tools.write_json(lvis_tools.ann_path(out, split), data)
    lvis_tools.write_heldout_split(
        out, heldout if heldout is not None else max(1, train_images // 4), seed=seed
    )
    return {
        "classes": names,
        "frequency": dict(zip(names, frequency, strict=True)),
        "image_count": dict(zip(names, image_count, strict=True)),
        "train": train_images,
        "val": val_images,
        "thresholds": thresholds,
    }


def mini_config(config: str | Path, data_root: str | Path, *, image_size: int | None = None) -> Any:
    """``config`` (a configs/lvis file) moved onto the mini set at ``data_root``; an mmengine ``Config``.

    Paths under the config's ``data_root`` move to ``data_root``, the class count and names become the mini
    set's (``cytolt.mm.lvis.retarget_config``), and every image scale, crop and pad size in the pipelines
    becomes ``image_size`` square (default: the mini set's image size), so nothing is upsampled to 1333x800.
    """
    from mmengine.config import Config

    from cytolt.mm.lvis import lvis_category_stats, retarget_config

    train = lvis_tools.read_json(lvis_tools.ann_path(data_root, "train"))
    size = image_size or max(max(img["height"], img["width"]) for img in train["images"])
    cfg = retarget_config(
        Config.fromfile(str(config)),
        data_root=data_root,
        classes=lvis_category_stats(lvis_tools.ann_path(data_root, "train")).names,
    )
    tree = cfg.to_dict()
    _set_image_size(tree, size)
    if tree.get("backbone_weights"):
        # The mini set is a smoke test of the pipeline: a random backbone is its setting, not a mistake.
        tree["backbone_weights"] = dict(tree["backbone_weights"], required=False)
    return Config(tree, cfg_text=cfg.text, filename=cfg.filename)


# Pipeline keys that hold a (width, height) target; RandomChoiceResize lists several under ``scales``.
_SIZE_KEYS = ("scale", "crop_size", "size")


def _set_image_size(node: Any, size: int, in_pipeline: bool = False) -> None:
    # Only transforms (anything under a "...pipeline" key): an AnchorGenerator's ``scales`` are not image sizes.
    if isinstance(node, dict):
        if in_pipeline and "type" in node:
            for key in _SIZE_KEYS:
                if isinstance(node.get(key), list | tuple) and len(node[key]) == 2:
                    node[key] = (size, size)
            if isinstance(node.get("scales"), list | tuple):
                node["scales"] = [(size, size)]
        for key, value in node.items():
            _set_image_size(value, size, in_pipeline or str(key).endswith("pipeline"))
    elif isinstance(node, list | tuple):
        for value in node:
            _set_image_size(value, size, in_pipeline)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="data root to write (or to reuse, with --config)")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--train-images", type=int, default=8)
    parser.add_argument("--val-images", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--heldout", type=int, default=None, help="CDB held-out images [a quarter of train]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite", action="store_true", help="regenerate even if OUT_DIR holds a mini set"
    )
    parser.add_argument("--config", help="also write this configs/lvis config retargeted to the mini set")
    parser.add_argument("--config-out", help="where to write the retargeted config (with --config)")
    args = parser.parse_args(argv)
    if bool(args.config) != bool(args.config_out):
        parser.error("--config and --config-out go together")

    if lvis_tools.ann_path(args.out_dir, "train").is_file() and not args.overwrite:
        print(f"{args.out_dir}: mini set exists, reused (--overwrite to regenerate)")
    else:
        summary = make_mini_lvis(
            args.out_dir,
            num_classes=args.classes,
            train_images=args.train_images,
            val_images=args.val_images,
            size=args.size,
            heldout=args.heldout,
            seed=args.seed,
        )
        groups = {g: sum(f == g for f in summary["frequency"].values()) for g in "rcf"}
        print(
            f"{args.out_dir}: {summary['train']} train + {summary['val']} val images, {len(summary['classes'])} "
            f"classes (r/c/f {groups['r']}/{groups['c']}/{groups['f']}, thresholds {summary['thresholds']})"
        )
    if args.config:
        cfg = mini_config(args.config, args.out_dir)
        Path(args.config_out).parent.mkdir(parents=True, exist_ok=True)
        cfg.dump(args.config_out)
        print(f"config for the mini set: {args.config_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
