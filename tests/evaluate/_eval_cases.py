"""Small hand-built LVIS ground truth and detections shared by the evaluation tests (imported as ``_eval_cases``).

Four categories: nilm (frequent), ascus (common), hsil (rare), scc (rare, no ground truth anywhere).

    image 1: nilm small [10,10,20,20], nilm medium [60,10,50,50], ascus large [150,150,120,120]
             neg [hsil]          not exhaustive []
    image 2: nilm medium [20,20,40,40], hsil small [200,200,30,30]
             neg [ascus]         not exhaustive []
    image 3: ascus medium [50,50,60,60]
             neg [nilm]          not exhaustive [ascus]   (hsil and scc unknown here)
    image 4: nothing             neg [nilm, ascus, hsil]
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

CATS = [
    {"id": 1, "name": "nilm", "frequency": "f"},
    {"id": 2, "name": "ascus", "frequency": "c"},
    {"id": 3, "name": "hsil", "frequency": "r"},
    {"id": 4, "name": "scc", "frequency": "r"},
]
# (annotation id, image id, category id, bbox xywh)
ANNS = [
    (1, 1, 1, [10, 10, 20, 20]),
    (2, 1, 1, [60, 10, 50, 50]),
    (3, 1, 2, [150, 150, 120, 120]),
    (4, 2, 1, [20, 20, 40, 40]),
    (5, 2, 3, [200, 200, 30, 30]),
    (6, 3, 2, [50, 50, 60, 60]),
]
NEG = {1: [3], 2: [2], 3: [1], 4: [1, 2, 3]}
NOT_EXHAUSTIVE = {1: [], 2: [], 3: [2], 4: []}


def box_polygon(b: list[float]) -> list[list[float]]:
    x, y, w, h = b
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def make_lvis_gt() -> dict[str, Any]:
    images = [
        {
            "id": i,
            "width": 400,
            "height": 400,
            "neg_category_ids": NEG[i],
            "not_exhaustive_category_ids": NOT_EXHAUSTIVE[i],
        }
        for i in (1, 2, 3, 4)
    ]
    anns = [
        {
            "id": aid,
            "image_id": img,
            "category_id": cat,
            "bbox": list(map(float, box)),
            "area": float(box[2] * box[3]),
            "segmentation": box_polygon(box),
        }
        for aid, img, cat, box in ANNS
    ]
    return {"images": images, "annotations": anns, "categories": copy.deepcopy(CATS)}


def perfect_detections() -> list[dict[str, Any]]:
    return [
        {"image_id": img, "category_id": cat, "bbox": list(map(float, box)), "score": 0.9 - 0.01 * aid}
        for aid, img, cat, box in ANNS
    ]


def imperfect_detections() -> list[dict[str, Any]]:
    """Perfect detections, except the medium nilm in image 1 is shifted (IoU 0.67) and one nilm FP in image 3."""
    dets = perfect_detections()
    dets[1]["bbox"] = [70.0, 10.0, 50.0, 50.0]
    dets.append({"image_id": 3, "category_id": 1, "bbox": [300.0, 300.0, 40.0, 40.0], "score": 0.95})
    return dets


def random_lvis_case(seed: int, n_images: int = 8) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random LVIS ground truth (random neg / not-exhaustive lists) and noisy detections."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}", "frequency": f} for c, f in zip(range(1, 6), "rrcff", strict=True)]
    images, anns, dets = [], [], []
    for img in range(1, n_images + 1):
        present = set()
        for _ in range(rng.integers(0, 5)):
            cat = int(rng.integers(1, 6))
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(8, 150, 2)
            box = [float(x), float(y), float(w), float(h)]
            anns.append(
                {"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": box, "area": w * h}
            )
            present.add(cat)
            if rng.random() < 0.8:  # a detection near the object
                jit = (np.array(box) + rng.normal(0, 0.1, 4) * np.array([w, h, w, h])).tolist()
                jit[2], jit[3] = max(jit[2], 1.0), max(jit[3], 1.0)
                dets.append({"image_id": img, "category_id": cat, "bbox": jit, "score": float(rng.random())})
        absent = [c for c in range(1, 6) if c not in present]
        neg = [c for c in absent if rng.random() < 0.5]
        not_exh = [c for c in sorted(present) if rng.random() < 0.3]
        images.append(
            {
                "id": img,
                "width": 450,
                "height": 450,
                "neg_category_ids": neg,
                "not_exhaustive_category_ids": not_exh,
            }
        )
        for _ in range(rng.integers(0, 6)):  # noise of any class
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(8, 150, 2)
            dets.append(
                {
                    "image_id": img,
                    "category_id": int(rng.integers(1, 6)),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "score": float(rng.random()),
                }
            )
    return {"images": images, "annotations": anns, "categories": cats}, dets


def with_box_masks(dets: list[dict[str, Any]], size: int = 400) -> list[dict[str, Any]]:
    """Replace each detection's bbox by its rectangle as a COCO RLE mask, as a segmentation head would give."""
    import pycocotools.mask as mask_utils

    out = []
    for d in dets:
        x, y, w, h = d["bbox"]
        m = np.zeros((size, size), dtype=np.uint8)
        m[int(y) : int(y + h), int(x) : int(x + w)] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({k: v for k, v in d.items() if k != "bbox"} | {"segmentation": rle})
    return out


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path
