"""Copy-paste cost per 512 x 512 image, beside the plain augmentation pipeline it is added to.

Data: 20 synthetic TCT patches of 512 px with their instance masks (``make_patch_dataset(images=60, size=512,
imbalance=20, seed=1)``) and a CellBank built from the same set. Each pipeline runs over the 20 patches once per
round, the pipelines interleaved, one OpenCV thread; a number is the best round (the least disturbed by other
work on the machine). "net cells" is the boxes out minus the boxes in: pasted cells minus occluded ones dropped.

Pipelines (albumentations, boxes + masks): plain flips + rot90; the same + ``CellCopyPasteAlbu`` with up to 5
and up to 10 cells (``class_weights="inverse"``); the cheap settings (no blending, no stain matching, 90-degree
rotations); and the numpy core alone with and without masks.

Writes docs/bench/copy_paste.json; the last line is the headline: copy-paste (up to 5 cells) over plain.
Run: .venv/bin/python bench/bench_copy_paste.py [--rounds 9] [--images 20]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from cytolt.augment import CellBank, CellCopyPaste
from cytolt.augment.albu import CellCopyPasteAlbu
from cytolt.augment.bank import decode_segmentation
from cytolt.synth import make_patch_dataset

ROOT = Path(__file__).resolve().parents[1]
SIZE = 512

Sample = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # image, boxes xyxy, labels, masks (M, H, W)


def load_samples(root: Path, n: int) -> list[Sample]:
    ann = json.loads((root / "annotations.json").read_text())
    cat_ids = [c["id"] for c in ann["categories"]]
    by_image: dict[int, list[dict]] = {}
    for a in ann["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in ann["images"][:n]:
        img = cv2.cvtColor(cv2.imread(str(root / im["file_name"])), cv2.COLOR_BGR2RGB)
        anns = by_image.get(im["id"], [])
        boxes = np.array(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32
        ).reshape(-1, 4)
        labels = np.array([cat_ids.index(a["category_id"]) for a in anns], np.int64)
        masks = np.stack([decode_segmentation(a["segmentation"], SIZE, SIZE) for a in anns]).astype(np.uint8)
        out.append((img, boxes, labels, masks))
    return out


def pipelines(bank: CellBank) -> dict[str, Callable[[Sample], int]]:
    """Name -> function augmenting one sample and returning the net number of boxes added."""
    params = A.BboxParams(format="pascal_voc", label_fields=["labels"])

    def albu(*extra: A.BasicTransform) -> Callable[[Sample], int]:
        geo = [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]
        compose = A.Compose([*geo, *extra], bbox_params=params, seed=0)

        def run(s: Sample) -> int:
            out = compose(image=s[0], bboxes=s[1], labels=s[2].tolist(), masks=s[3])
            return len(out["bboxes"]) - len(s[1])

        return run

    def core(masks: bool) -> Callable[[Sample], int]:
        cp = CellCopyPaste(bank=bank, class_weights="inverse", max_pasted=5, seed=0)

        def run(s: Sample) -> int:
            out = cp(s[0], s[1], s[2], s[3].astype(bool) if masks else None)
            return len(out[1]) - len(s[1])

        return run

    def paste(**kw) -> CellCopyPasteAlbu:
        return CellCopyPasteAlbu(copy_paste=CellCopyPaste(bank=bank, class_weights="inverse", **kw))

    return {
        "plain: flips + rot90": albu(),
        "+ copy-paste, up to 5 cells": albu(paste(max_pasted=5)),
        "+ copy-paste, up to 10 cells": albu(paste(max_pasted=10)),
        "+ copy-paste, 5 cells, no blend/stain, rot90": albu(
            paste(max_pasted=5, blend_sigma=0, match_stain=False, rotate="90")
        ),
        "numpy core alone, 5 cells, masks": core(True),
        "numpy core alone, 5 cells, boxes only": core(False),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--images", type=int, default=20, help="patches timed per round")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "copy_paste.json")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench_cp_") as tmp:
        root = Path(tmp)
        make_patch_dataset(root, images=60, size=SIZE, imbalance=20, seed=1, image_format="png")
        bank = CellBank.build(root / "annotations.json", root, cache_dir=root / "cache")
        samples = load_samples(root, args.images)
        cells = float(np.mean([len(s[1]) for s in samples]))
        print(f"{len(samples)} patches {SIZE}x{SIZE}, {cells:.1f} cells per patch; {bank}")
        runs = pipelines(bank)
        best = dict.fromkeys(runs, float("inf"))
        added: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                t0 = time.perf_counter()
                net = sum(run(s) for s in samples)
                best[name] = min(best[name], (time.perf_counter() - t0) / len(samples) * 1e3)
                added[name] = net / len(samples)
    plain = best["plain: flips + rot90"]
    rows = [
        {
            "pipeline": k,
            "ms_per_image": round(v, 2),
            "net_cells": round(added[k], 2),
            "vs_plain": round(v / plain, 3),
        }
        for k, v in best.items()
    ]
    for r in rows:
        print(
            f"{r['pipeline']:48s} {r['ms_per_image']:7.1f} ms/img  net {r['net_cells']:+5.2f} cells  {r['vs_plain']:.2f}x"
        )
    record = {
        "benchmark": "copy_paste",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "opencv_threads": 1},
        "patches": len(samples),
        "cells_per_patch": round(cells, 2),
        "rounds": args.rounds,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    head = best["+ copy-paste, up to 5 cells"]
    print(f"copy-paste (up to 5 cells) {head:.1f} ms/img vs plain {plain:.1f} ms/img = {head / plain:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
