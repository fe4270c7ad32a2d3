"""Tests for cytolt/mm/transforms.py: CellCopyPaste as an mmdet 3 pipeline transform."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

import cytolt.mm  # noqa: F401  (registers CellCopyPaste)
from cytolt.augment import CellBank, CellCopyPaste, CellInstance
from cytolt.mm.transforms import CellCopyPasteTransform

CLASSES = ("normal", "asc-us", "hsil")
CELL_RGB = (40, 30, 90)


def _tiny_coco(root: Path) -> tuple[Path, Path]:
    """Two 64x64 RGB images with rectangular cells (polygons), written as PNG (stored BGR by OpenCV)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    cells = {1: [(0, (4, 4, 20, 18)), (1, (30, 6, 44, 22))], 2: [(2, (8, 36, 24, 52)), (0, (40, 40, 56, 58))]}
    for image_id, items in cells.items():
        img = np.full((64, 64, 3), (228, 220, 234), np.uint8)
        for cat, (x0, y0, x1, y1) in items:
            img[y0:y1, x0:x1] = CELL_RGB
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
        cv2.imwrite(str(img_dir / f"{image_id}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 64, "height": 64})
    ann = root / "train.json"
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann, img_dir


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    out = []
    for m in masks.astype(bool):
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(out, np.float32).reshape(-1, 4)


def test_registered_under_its_own_name():
    from mmdet.registry import TRANSFORMS

    assert TRANSFORMS.get("CellCopyPaste") is CellCopyPasteTransform
    assert TRANSFORMS.get("CopyPaste") is not CellCopyPasteTransform  # mmdet's own stays


def test_pipeline_on_a_tiny_coco_dataset(tmp_path):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    ann, img_dir = _tiny_coco(tmp_path / "data")
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
        dict(
            type="CellCopyPaste",
            bank=dict(
                ann_file=str(ann), img_dir=str(img_dir), classes=CLASSES, cache_dir=str(tmp_path / "cache")
            ),
            class_weights="inverse",
            max_pasted=4,
            max_overlap=0.0,
            seed=0,
        ),
        dict(type="PackDetInputs"),
    ]
    ds = CocoDataset(
        ann_file=str(ann),
        data_prefix=dict(img=str(img_dir) + "/"),
        metainfo=dict(classes=CLASSES),
        pipeline=pipeline,
        filter_cfg=None,
    )
    grew = 0
    for _ in range(3):
        for i in range(len(ds)):
            item = ds[i]
            gt = item["data_samples"].gt_instances
            boxes = gt.bboxes.tensor.numpy() if hasattr(gt.bboxes, "tensor") else gt.bboxes.numpy()
            masks = gt.masks.masks if isinstance(gt.masks, BitmapMasks) else gt.masks.to_ndarray()
            assert len(boxes) == len(gt.labels) == len(masks)
            np.testing.assert_array_equal(boxes, _mask_boxes(masks))
            assert item["inputs"].shape == (3, 64, 64)
            grew += len(boxes) - 2
    assert grew > 0


def _results(masks_cls=BitmapMasks):
    img_rgb = np.full((64, 64, 3), (228, 220, 234), np.uint8)
    img_rgb[4:20, 4:24] = (150, 120, 170)
    m = np.zeros((1, 64, 64), np.uint8)
    m[0, 4:20, 4:24] = 1
    masks = (
        BitmapMasks(m, 64, 64)
        if masks_cls is BitmapMasks
        else PolygonMasks([[np.array([4, 4, 24, 4, 24, 20, 4, 20], float)]], 64, 64)
    )
    return {
        "img": np.ascontiguousarray(img_rgb[..., ::-1]),
        "img_shape": (64, 64),
        "gt_bboxes": HorizontalBoxes(np.array([[4, 4, 24, 20]], np.float32)),
        "gt_bboxes_labels": np.array([0]),
        "gt_masks": masks,
        "gt_ignore_flags": np.array([True]),
    }


def _dark_bank(n=3) -> CellBank:
    cells = []
    for _ in range(n):
        crop = np.full((16, 12, 3), (228, 220, 234), np.uint8)
        alpha = np.zeros((16, 12), np.float32)
        alpha[3:13, 2:10] = 1
        crop[3:13, 2:10] = CELL_RGB
        cells.append(CellInstance(crop, alpha, 2, None))
    return CellBank.from_instances(cells, classes=CLASSES)


@pytest.mark.parametrize("masks_cls", [BitmapMasks, PolygonMasks])
def test_transform_keeps_fields_aligned_and_colours_in_bgr(masks_cls):
    t = CellCopyPasteTransform(
        bank=_dark_bank(),
        max_pasted=3,
        max_overlap=0.0,
        blend_sigma=0.0,
        match_stain=False,
        rotate="none",
        scale=(1, 1),
        seed=1,
    )
    pasted = 0
    for _ in range(5):
        r = t.transform(_results(masks_cls))
        boxes = r["gt_bboxes"].tensor.numpy()
        assert isinstance(r["gt_bboxes"], HorizontalBoxes) and isinstance(r["gt_masks"], BitmapMasks)
        n = len(boxes)
        assert len(r["gt_bboxes_labels"]) == len(r["gt_ignore_flags"]) == len(r["gt_masks"]) == n
        np.testing.assert_array_equal(boxes, _mask_boxes(r["gt_masks"].masks))
        assert r["gt_ignore_flags"].tolist() == [True] + [False] * (n - 1)
        assert r["gt_bboxes_labels"].tolist() == [0] + [2] * (n - 1)
        for k in range(1, n):  # pasted RGB cells appear as BGR pixels in mmdet's image
            m = r["gt_masks"].masks[k].astype(bool)
            np.testing.assert_array_equal(r["img"][m], np.broadcast_to(CELL_RGB[::-1], (m.sum(), 3)))
        pasted += n - 1
    assert pasted > 0


def test_mix_results_source_and_errors():
    t = CellCopyPasteTransform(max_pasted=5, max_overlap=1.0, class_weights="instance", seed=0)
    counts = set()
    for _ in range(20):
        res = _results()
        res["mix_results"] = [_results()]
        out = t.transform(res)
        counts.add(len(out["gt_bboxes_labels"]))
    assert counts <= {1, 2} and 2 in counts  # the source holds one cell: m in {0, 1}
    with pytest.raises(ValueError, match="neither a bank nor mix_results"):
        t.transform(_results())
    bad = _results()
    bad["img"] = bad["img"].astype(np.float32)
    with pytest.raises(ValueError, match="before Normalize"):
        CellCopyPasteTransform(bank=_dark_bank()).transform(bad)
    with pytest.raises(ValueError, match="needs 'ann_file' and 'img_dir'"):
        CellCopyPasteTransform(bank=dict(ann_file="x.json"))
    assert isinstance(t.copy_paste, CellCopyPaste)


def test_empty_destination_gets_cells():
    t = CellCopyPasteTransform(bank=_dark_bank(), max_pasted=3, seed=0)
    total = 0
    for _ in range(5):
        res = {
            "img": np.full((64, 64, 3), 230, np.uint8),
            "gt_bboxes": HorizontalBoxes(np.zeros((0, 4), np.float32)),
            "gt_bboxes_labels": np.zeros(0, np.int64),
            "gt_masks": BitmapMasks(np.zeros((0, 64, 64), np.uint8), 64, 64),
            "gt_ignore_flags": np.zeros(0, bool),
        }
        out = t.transform(res)
        n = len(out["gt_bboxes_labels"])
        assert (
            out["gt_bboxes"].tensor.shape == (n, 4)
            and len(out["gt_masks"]) == len(out["gt_ignore_flags"]) == n
        )
        if n:
            np.testing.assert_array_equal(out["gt_bboxes"].tensor.numpy(), _mask_boxes(out["gt_masks"].masks))
        total += n
    assert total > 0
