"""Tests of cytolt.detect.types.Detections: conversion, validation and the helpers that move boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.detect.types import Detections


def _dets(n: int = 3, c: int | None = 4, seed: int = 0) -> Detections:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 20 + 1
    cs = None if c is None else torch.rand(n, c, generator=g)
    return Detections(
        boxes=torch.cat([xy, xy + wh], 1),
        scores=torch.rand(n, generator=g),
        labels=torch.randint(0, c or 3, (n,), generator=g),
        class_scores=cs,
    )


def test_converts_numpy_and_lists_to_tensors_of_the_contract_dtypes() -> None:
    d = Detections(
        boxes=np.array([[0, 0, 10, 10]], dtype=np.float64),
        scores=[0.5],
        labels=np.array([2], dtype=np.int32),
        class_scores=np.array([[0.1, 0.2, 0.5]], dtype=np.float64),
    )
    assert d.boxes.dtype == torch.float32 and d.scores.dtype == torch.float32
    assert d.labels.dtype == torch.int64 and d.class_scores.dtype == torch.float32
    assert len(d) == 1 and d.num_classes == 3


def test_empty_inputs_give_zero_length_detections() -> None:
    d = Detections(boxes=[], scores=[], labels=[])
    assert len(d) == 0 and d.boxes.shape == (0, 4)
    e = Detections.empty(num_classes=5)
    assert e.class_scores.shape == (0, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": np.zeros((2, 5)), "scores": np.zeros(2), "labels": np.zeros(2)}, "boxes must have shape"),
        ({"boxes": np.zeros((2, 4)), "scores": np.zeros(3), "labels": np.zeros(2)}, "scores must have shape"),
        (
            {"boxes": np.zeros((2, 4)), "scores": np.zeros(2), "labels": np.zeros((2, 1))},
            "labels must have shape",
        ),
        (
            {
                "boxes": np.zeros((2, 4)),
                "scores": np.zeros(2),
                "labels": np.zeros(2),
                "class_scores": np.zeros((3, 4)),
            },
            "class_scores must have shape",
        ),
        ({"boxes": "nope", "scores": np.zeros(2), "labels": np.zeros(2)}, "cannot be converted"),
    ],
)
def test_bad_shapes_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Detections(np.zeros((1, 4)), np.zeros(1), np.zeros(1))  # type: ignore[misc]


def test_scale_then_translate_maps_tile_boxes_to_level0() -> None:
    d = _dets()
    before = d.boxes.clone()
    moved = d.scale(4.0).translate(1000, 2000)
    expected = d.boxes * 4 + torch.tensor([1000.0, 2000.0, 1000.0, 2000.0])
    torch.testing.assert_close(moved.boxes, expected)
    # anisotropic scale and numpy scalars are accepted; the original is untouched
    aniso = d.scale((np.float32(2.0), 3.0))
    torch.testing.assert_close(aniso.boxes[:, 1], d.boxes[:, 1] * 3)
    torch.testing.assert_close(aniso.boxes[:, 0], d.boxes[:, 0] * 2)
    torch.testing.assert_close(d.boxes, before)
    with pytest.raises(ValueError, match="positive"):
        d.scale(0)


def test_select_by_mask_index_and_slice_keeps_rows_together() -> None:
    d = _dets(n=5)
    mask = d.scores > d.scores.median()
    by_mask = d.select(mask)
    idx = torch.nonzero(mask).flatten()
    by_idx = d.select(idx.numpy())
    for a, b in [(by_mask, by_idx)]:
        torch.testing.assert_close(a.boxes, b.boxes)
        torch.testing.assert_close(a.class_scores, b.class_scores)
        torch.testing.assert_close(a.labels, b.labels)
    assert len(d.select(slice(1, 3))) == 2
    assert len(d.select([])) == 0
    with pytest.raises(ValueError, match="mask has shape"):
        d.select(np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="bool or integer"):
        d.select(np.array([0.5]))


def test_cat_concatenates_and_refuses_mixed_class_scores() -> None:
    a, b = _dets(n=2, seed=1), _dets(n=3, seed=2)
    both = Detections.cat([a, b])
    assert len(both) == 5
    torch.testing.assert_close(both.boxes[2:], b.boxes)
    torch.testing.assert_close(both.class_scores[:2], a.class_scores)
    assert len(Detections.cat([])) == 0
    # an empty tile without class_scores does not spoil the others
    joined = Detections.cat([Detections.empty(), a, Detections.empty(num_classes=7)])
    assert len(joined) == 2 and joined.num_classes == 4
    assert Detections.cat([Detections.empty(num_classes=3)] * 2).num_classes == 3
    with pytest.raises(ValueError, match="some items have class_scores"):
        Detections.cat([a, _dets(n=1, c=None)])
    with pytest.raises(ValueError, match="widths differ"):
        Detections.cat([a, _dets(n=1, c=2)])


def test_numpy_and_to_round_trip() -> None:
    d = _dets()
    arr = d.numpy()
    assert set(arr) == {"boxes", "scores", "labels", "class_scores"}
    assert arr["boxes"].dtype == np.float32 and arr["labels"].dtype == np.int64
    back = Detections(**arr)
    torch.testing.assert_close(back.boxes, d.boxes)
    assert d.to("cpu").device.type == "cpu"
    assert "class_scores" not in _dets(c=None).numpy()


def test_is_immutable() -> None:
    d = _dets()
    with pytest.raises(AttributeError):
        d.boxes = torch.zeros(0, 4)  # type: ignore[misc]
