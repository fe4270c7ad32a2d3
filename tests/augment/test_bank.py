"""Tests for cytolt/augment/bank.py: building from COCO (polygons, RLE, boxes only), labels, cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cytolt.augment import CellBank, CellCopyPaste

BG = (228, 220, 234)


def _rect_poly(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(root: Path) -> tuple[Path, Path, dict]:
    """Two 64x64 images; cells drawn as rectangles so the expected masks are exact.

    Categories have non-contiguous ids 3 ('normal'), 7 ('asc-us'), 11 ('hsil'), listed in that order.
    """
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    colours = {3: (150, 120, 170), 7: (90, 60, 140), 11: (40, 30, 90)}

    def add(image_id, cat, rect, kind):
        x0, y0, x1, y1 = rect
        ann = {
            "id": len(anns) + 1,
            "image_id": image_id,
            "category_id": cat,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0),
            "iscrowd": 0,
        }
        m = np.zeros((64, 64), np.uint8, order="F")
        m[y0:y1, x0:x1] = 1
        if kind == "poly":
            ann["segmentation"] = _rect_poly(x0, y0, x1, y1)
        elif kind == "rle":
            rle = mask_utils.encode(m)
            ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        elif kind == "rle-list":
            # Uncompressed RLE: run lengths in column-major order.
            flat = m.flatten(order="F")
            runs, cur, n = [], 0, 0
            for v in flat:
                if v != cur:
                    runs.append(n)
                    cur, n = v, 0
                n += 1
            runs.append(n)
            ann["segmentation"] = {"size": [64, 64], "counts": runs}
        elif kind == "crowd":
            ann["iscrowd"] = 1
            ann["segmentation"] = _rect_poly(x0, y0, x1, y1)
        anns.append(ann)
        return m.astype(bool)

    for image_id, cells in (
        (1, [(3, (4, 4, 20, 18), "poly"), (7, (30, 6, 42, 20), "rle"), (11, (10, 36, 24, 50), "box")]),
        (2, [(3, (6, 8, 22, 22), "rle-list"), (3, (40, 40, 56, 58), "poly"), (7, (30, 30, 38, 38), "crowd")]),
    ):
        img = np.empty((64, 64, 3), np.uint8)
        img[:] = BG
        for cat, rect, kind in cells:
            x0, y0, x1, y1 = rect
            img[y0:y1, x0:x1] = colours[cat]
            add(image_id, cat, rect, kind)
        name = f"img{image_id}.png"
        cv2.imwrite(str(img_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": name, "width": 64, "height": 64})
    images.append({"id": 3, "file_name": "img3.png", "width": 64, "height": 64})  # no cells
    cv2.imwrite(str(img_dir / "img3.png"), np.full((64, 64, 3), 230, np.uint8))
    cats = [{"id": 3, "name": "normal"}, {"id": 7, "name": "asc-us"}, {"id": 11, "name": "hsil"}]
    coco = {"images": images, "annotations": anns, "categories": cats}
    ann_file = root / "train.json"
    ann_file.write_text(json.dumps(coco))
    return ann_file, img_dir, coco


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "data")


def test_build_cuts_every_non_crowd_cell(coco, tmp_path):
    ann_file, img_dir, _ = coco
    bank = CellBank.build(ann_file, img_dir, cache_dir=tmp_path / "cache", margin=2)
    assert bank.classes == ("normal", "asc-us", "hsil")
    np.testing.assert_array_equal(bank.cells_per_class, [3, 1, 1])  # the crowd region is not a cell to paste
    np.testing.assert_array_equal(bank.dataset_images_per_class, [2, 1, 1])
    assert bank.num_images == 3 and len(bank) == 5
    for i in range(len(bank)):
        cell = bank.instance(i)
        ys, xs = np.nonzero(cell.mask)
        assert ys.min() == 2 and xs.min() == 2, "margin of 2 context pixels around the box"
        assert cell.image.shape[:2] == cell.alpha.shape
        np.testing.assert_allclose(cell.background, BG, atol=1)
    # Polygon / RLE / uncompressed-RLE cells are rectangles: the mask is the whole box.
    normal = [bank.instance(i) for i in np.flatnonzero(bank.labels == 0)]
    for cell in normal:
        h, w = cell.mask.shape
        assert cell.mask.sum() == (h - 4) * (w - 4)
        np.testing.assert_array_equal(cell.image[cell.mask][0], (150, 120, 170))
    # A boxes-only annotation becomes the soft inscribed ellipse of its box.
    hsil = bank.instance(int(np.flatnonzero(bank.labels == 2)[0]))
    assert ((hsil.alpha > 0) & (hsil.alpha < 1)).any()
    assert hsil.mask.sum() < 0.85 * 14 * 14


def test_classes_pick_and_order_labels(coco, tmp_path):
    ann_file, img_dir, _ = coco
    bank = CellBank.build(ann_file, img_dir, classes=["hsil", "normal"], cache_dir=tmp_path)
    assert bank.classes == ("hsil", "normal")
    np.testing.assert_array_equal(bank.cells_per_class, [1, 3])
    assert bank.sample(0, np.random.default_rng(0)).label == 0
    with pytest.raises(ValueError, match=r"\['lsil'\] not among the file's categories"):
        CellBank.build(ann_file, img_dir, classes=["lsil"], cache_dir=tmp_path)


def test_cache_hit_returns_the_same_bank(coco, tmp_path):
    ann_file, img_dir, _ = coco
    cache = tmp_path / "cache"
    first = CellBank.build(ann_file, img_dir, cache_dir=cache)
    assert not first.from_cache
    files = list(cache.glob("cellbank-*.npz"))
    assert files == [first.cache_file]
    with np.load(first.cache_file, allow_pickle=False) as z:  # plain arrays only, no pickled objects
        assert {"crops", "alphas", "shapes", "labels", "classes"} <= set(z.files)
    second = CellBank.build(ann_file, img_dir, cache_dir=cache)
    assert second.from_cache and second.cache_file == first.cache_file
    assert second.classes == first.classes
    for name in (
        "labels",
        "cells_per_class",
        "dataset_instances_per_class",
        "dataset_images_per_class",
        "image_ids",
        "backgrounds",
    ):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    for i in range(len(first)):
        a, b = first.instance(i), second.instance(i)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.alpha, b.alpha)
    # Same draws from either bank.
    img = np.full((64, 64, 3), 230, np.uint8)
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros((0, 64, 64), bool))
    out1 = CellCopyPaste(bank=first, seed=3)(img, *empty)
    out2 = CellCopyPaste(bank=second, seed=3)(img, *empty)
    np.testing.assert_array_equal(out1[0], out2[0])


def test_changed_dataset_or_options_miss_the_cache(coco, tmp_path):
    ann_file, img_dir, data = coco
    cache = tmp_path / "cache"
    CellBank.build(ann_file, img_dir, cache_dir=cache)
    assert not CellBank.build(ann_file, img_dir, cache_dir=cache, margin=6).from_cache
    assert not CellBank.build(ann_file, img_dir, cache_dir=cache, classes=["normal"]).from_cache
    data["annotations"] = data["annotations"][1:]
    ann_file.write_text(json.dumps(data))
    rebuilt = CellBank.build(ann_file, img_dir, cache_dir=cache)
    assert not rebuilt.from_cache
    assert rebuilt.cells_per_class.sum() == 4
    # An image rewritten with different content (and size) is a different dataset too.
    cv2.imwrite(
        str(img_dir / "img1.png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    )
    assert not CellBank.build(ann_file, img_dir, cache_dir=cache).from_cache
    assert len(list(cache.glob("cellbank-*.npz"))) == 5


def test_max_per_class_caps_the_bank_not_the_statistics(coco, tmp_path):
    ann_file, img_dir, _ = coco
    bank = CellBank.build(ann_file, img_dir, cache_dir=tmp_path, max_per_class=1)
    np.testing.assert_array_equal(bank.cells_per_class, [1, 1, 1])
    np.testing.assert_array_equal(bank.dataset_instances_per_class, [3, 1, 1])


def test_sample_errors_and_unreadable_inputs(coco, tmp_path):
    ann_file, img_dir, data = coco
    bank = CellBank.build(ann_file, img_dir, classes=["normal", "asc-us"], cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    assert {bank.sample(0, rng).label for _ in range(5)} == {0}
    with pytest.raises(ValueError, match=r"class_id must be in \[0, 2\)"):
        bank.sample(2, rng)
    empty = CellBank.from_instances([], classes=["a"])
    with pytest.raises(ValueError, match="no cell of class 0"):
        empty.sample(0, rng)
    (img_dir / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match="img2.png"):
        CellBank.build(ann_file, img_dir, cache_dir=tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CellBank.build(tmp_path / "nope.json", img_dir)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="missing the 'annotations' list"):
        CellBank.build(bad, img_dir)


def test_corrupt_cache_file_is_reported(coco, tmp_path):
    ann_file, img_dir, _ = coco
    bank = CellBank.build(ann_file, img_dir, cache_dir=tmp_path)
    bank.cache_file.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable.*delete it to rebuild"):
        CellBank.build(ann_file, img_dir, cache_dir=tmp_path)
