"""Tests for cytolt/augment/albu.py: CellCopyPasteAlbu inside albumentations' Compose."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from cytolt.augment import CellCopyPaste, masks_to_boxes
from cytolt.augment.albu import CellCopyPasteAlbu
from tests.augment.cp_scenes import draw_scene, make_bank


def _compose(cp, *, label_fields=("labels",), seed=0, extra=()):
    return A.Compose(
        [*extra, CellCopyPasteAlbu(copy_paste=cp)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(label_fields)),
        seed=seed,
    )


def _check(out, h, w):
    boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    masks = np.asarray(out["masks"]).astype(bool)
    assert len(boxes) == len(out["labels"]) == len(masks)
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= w) and np.all(boxes[:, [1, 3]] <= h)
    # Normalised and back: equal up to float32 rounding.
    np.testing.assert_allclose(boxes, masks_to_boxes(masks), atol=1e-3)
    return boxes, masks


def test_compose_with_flip_adds_cells_with_consistent_boxes_masks_and_labels():
    image, boxes, labels, masks = draw_scene(np.random.default_rng(0), size=96, n_cells=4)
    cp = CellCopyPaste(bank=make_bank([6, 3, 1]), class_weights="inverse", max_pasted=5, max_overlap=0.0)
    aug = _compose(cp, extra=[A.HorizontalFlip(p=1.0)])
    grew = 0
    for _ in range(6):
        out = aug(image=image, bboxes=boxes, labels=labels.tolist(), masks=masks.astype(np.uint8))
        b, m = _check(out, 96, 96)
        assert out["image"].dtype == np.uint8 and out["image"].shape == image.shape
        # The destination cells come first, flipped, unchanged otherwise (max_overlap=0).
        n = len(boxes)
        np.testing.assert_array_equal(m[:n], masks[:, :, ::-1])
        assert list(out["labels"][:n]) == labels.tolist()
        assert all(int(k) in (0, 1, 2) for k in out["labels"][n:])
        grew += len(b) - n
    assert grew > 0


def test_string_labels_get_bank_class_names():
    image, boxes, labels, masks = draw_scene(np.random.default_rng(1), size=96, n_cells=3)
    bank = make_bank([2, 2])
    names = [bank.classes[k % 2] for k in labels]
    aug = _compose(CellCopyPaste(bank=bank, max_pasted=4, max_overlap=0.0))
    seen = set()
    for _ in range(5):
        out = aug(image=image, bboxes=boxes, labels=names, masks=masks.astype(np.uint8))
        _check(out, 96, 96)
        assert list(out["labels"][: len(names)]) == names
        seen |= set(out["labels"])
    assert seen <= set(bank.classes) and seen


def test_empty_image_and_label_column_in_bboxes():
    h = w = 64
    image = np.full((h, w, 3), 230, np.uint8)
    cp = CellCopyPaste(bank=make_bank([3, 3]), max_pasted=3)
    aug = _compose(cp)
    total = 0
    for _ in range(5):
        out = aug(image=image, bboxes=np.zeros((0, 4)), labels=[], masks=np.zeros((0, h, w), np.uint8))
        b, _ = _check(out, h, w)
        total += len(b)
    assert total > 0
    # Without label_fields the class is the 5th bbox column.
    aug = _compose(cp, label_fields=())
    image2, boxes, labels, masks = draw_scene(np.random.default_rng(2), size=64, n_cells=2)
    out = aug(image=image2, bboxes=np.hstack([boxes, labels[:, None]]), masks=masks.astype(np.uint8))
    rows = np.asarray(out["bboxes"]).reshape(-1, 5)
    np.testing.assert_array_equal(rows[: len(labels), 4], labels)
    np.testing.assert_allclose(rows[:, :4], masks_to_boxes(np.asarray(out["masks"]).astype(bool)), atol=1e-3)


def test_compose_seed_makes_it_repeatable():
    image, boxes, labels, masks = draw_scene(np.random.default_rng(3), size=96)
    cp = CellCopyPaste(bank=make_bank([3, 3, 3]), max_pasted=6)
    a = _compose(cp, seed=5)(image=image, bboxes=boxes, labels=labels.tolist(), masks=masks)
    b = _compose(cp, seed=5)(image=image, bboxes=boxes, labels=labels.tolist(), masks=masks)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(np.asarray(a["bboxes"]), np.asarray(b["bboxes"]))


def test_adapter_rejects_what_it_cannot_handle():
    with pytest.raises(ValueError, match="pastes from a bank"):
        CellCopyPasteAlbu(copy_paste=CellCopyPaste())
    image, boxes, labels, masks = draw_scene(np.random.default_rng(4), size=64, n_cells=2)
    aug = A.Compose(
        [CellCopyPasteAlbu(copy_paste=CellCopyPaste(bank=make_bank([2])))],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "ids"]),
    )
    with pytest.raises(ValueError, match=r"label_fields must be \['labels'\]"):
        aug(image=image, bboxes=boxes, labels=labels.tolist(), ids=list(range(len(labels))), masks=masks)
