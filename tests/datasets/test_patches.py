"""cytolt/datasets/patches.py on an in-memory slide whose pixels are random, so any misplaced read shows."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytolt.datasets.patches import (
    background_windows,
    cover_windows,
    extract_patches,
    read_patch,
    window_at,
    window_instances,
)
from cytolt.io import Slide, SlideError, TissueMask


class ArraySlide(Slide):
    """A two-level pyramid held in memory (level 1 = level 0 area-halved), mpp 0.25 unless told."""

    backend = "array"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        return False

    def __init__(self, image: np.ndarray, *, mpp: float | None = 0.25) -> None:
        super().__init__("array.tiff")
        h, w = image.shape[:2]
        self.levels = [image, cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)]
        self._level_dimensions = tuple((a.shape[1], a.shape[0]) for a in self.levels)
        self._level_downsamples = (1.0, 2.0)
        self._native_mpp = None if mpp is None else (mpp, mpp)

    @property
    def properties(self):
        return {"vendor": "array"}

    @property
    def associated_images(self):
        return ()

    def _read_region(self, x, y, level, w, h):
        ds = self._level_downsamples[level]
        src = self.levels[level]
        xl, yl = math.floor(x / ds), math.floor(y / ds)
        out = np.full((h, w, 3), 255, np.uint8)
        sx0, sy0 = max(xl, 0), max(yl, 0)
        sx1, sy1 = min(xl + w, src.shape[1]), min(yl + h, src.shape[0])
        out[sy0 - yl : sy1 - yl, sx0 - xl : sx1 - xl] = src[sy0:sy1, sx0:sx1]
        return out

    def _read_associated(self, name):
        raise KeyError(name)

    def _close(self):
        pass


@pytest.fixture(scope="module")
def slide() -> ArraySlide:
    return ArraySlide(np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8))


def test_a_window_sits_on_the_read_levels_grid_and_reads_those_pixels(slide):
    # 0.5 um/px from 0.25: 2 level-0 px per patch px, read from level 1 (downsample 2) without resizing.
    w = window_at(slide, 101.0, 57.0, mpp_out=0.5, size=64)
    assert (w.level, w.origin, w.scale, w.location, w.read_size) == (
        1,
        (100.0, 56.0),
        (2.0, 2.0),
        (100, 56),
        (64, 64),
    )
    assert np.array_equal(read_patch(slide, w), slide.levels[1][28 : 28 + 64, 50 : 50 + 64])
    # 0.375 um/px: 1.5 level-0 px per patch px, from level 0 shrunk with area averaging.
    w = window_at(slide, 30.0, 40.0, mpp_out=0.375, size=64)
    assert (w.level, w.origin, w.scale, w.read_size) == (0, (30.0, 40.0), (1.5, 1.5), (96, 96))
    expected = cv2.resize(slide.levels[0][40:136, 30:126], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(read_patch(slide, w), expected)
    boxes = np.array([[130.0, 60.0, 150.0, 90.0]])
    assert np.allclose(w.to_level0(w.to_patch(boxes)), boxes)
    assert np.allclose(w.to_patch(boxes), [[(130 - 30) / 1.5, (60 - 40) / 1.5, 80, 100 / 3]])


def test_a_slide_without_mpp_is_refused_with_the_option_to_give_it():
    bare = ArraySlide(np.zeros((64, 64, 3), np.uint8), mpp=None)
    with pytest.raises(SlideError, match="--mpp"):
        window_at(bare, 0, 0, mpp_out=0.5, size=32)


def test_every_box_lies_whole_in_some_window(slide):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, [2900, 1900], (300, 2))
    wh = rng.uniform(5, 100, (300, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [3000, 2000])], axis=1)
    windows = cover_windows(slide, boxes, mpp_out=0.5, size=128)  # footprint 256 level-0 px
    extents = np.array([w.box_l0 for w in windows])
    assert (extents[:, :2] >= 0).all() and (extents[:, 2] <= 3000).all() and (extents[:, 3] <= 2000).all()
    whole = (
        (boxes[:, None, 0] >= extents[None, :, 0])
        & (boxes[:, None, 1] >= extents[None, :, 1])
        & (boxes[:, None, 2] <= extents[None, :, 2])
        & (boxes[:, None, 3] <= extents[None, :, 3])
    )
    assert whole.any(axis=1).all()
    assert len(windows) < len(boxes)  # one window holds several boxes


def test_a_box_larger_than_a_patch_gets_one_centred_window(slide):
    (w,) = cover_windows(slide, np.array([[1000.0, 500.0, 1600.0, 700.0]]), mpp_out=0.5, size=128)
    x0, y0, x1, y1 = w.box_l0
    assert abs((x0 + x1) / 2 - 1300) <= 2 and abs((y0 + y1) / 2 - 600) <= 2
    index, boxes, whole, _ = window_instances(
        w, np.array([[1000.0, 500.0, 1600.0, 700.0]]), np.array([0]), min_visible=0.1
    )
    assert index.tolist() == [0] and not whole[0] and np.allclose(boxes, [[0, 14, 128, 114]])


def test_boxes_cut_by_the_edge_follow_min_visible(slide):
    w = window_at(slide, 0, 0, mpp_out=0.25, size=100)  # level-0 px = patch px, extent (0, 0, 100, 100)
    boxes = np.array(
        [
            [10.0, 10.0, 30.0, 30.0],  # inside
            [80.0, 10.0, 110.0, 30.0],  # 2/3 inside: kept, clipped
            [90.0, 50.0, 120.0, 60.0],  # 1/3 inside: left out, its class not exhaustive
            [20.0, 20.0, 40.0, 40.0],  # a hard negative: never an instance
            [300.0, 300.0, 310.0, 310.0],  # elsewhere
        ]
    )
    labels = np.array([0, 1, 2, -1, 3])
    index, patch_boxes, whole, cut = window_instances(w, boxes, labels)
    assert index.tolist() == [0, 1] and whole.tolist() == [True, False]
    assert np.allclose(patch_boxes, [[10, 10, 30, 30], [80, 10, 100, 30]])
    assert cut == (2,)


def test_background_windows_are_cellular_away_from_boxes_and_seeded(slide):
    mask = np.zeros((200, 300), bool)  # 10 level-0 px per mask pixel
    mask[:, :150] = True  # the left half is cellular
    tissue = TissueMask(mask=mask, downsample=(10.0, 10.0), mpp=2.5, slide_dimensions=(3000, 2000))
    boxes = np.array([[100.0, 100.0, 140.0, 140.0]])
    picked = background_windows(slide, boxes, 5, mpp_out=0.5, size=128, seed=3, mask=tissue)
    assert len(picked) == 5
    for w in picked:
        x0, y0, x1, y1 = w.box_l0
        assert (min(x1, 1500) - x0) / (x1 - x0) >= 0.5  # at least half cellular
        assert not (x0 < 140 and x1 > 100 and y0 < 140 and y1 > 100)  # away from the box
    again = background_windows(slide, boxes, 5, mpp_out=0.5, size=128, seed=3, mask=tissue)
    assert [w.origin for w in again] == [w.origin for w in picked]
    # as many as fit when more are asked for: windows of the cellular half, none overlapping another
    everything = background_windows(slide, boxes, 1000, mpp_out=0.5, size=128, seed=3, mask=tissue)
    extents = np.array([w.box_l0 for w in everything])
    inter_w = np.minimum(extents[:, None, 2], extents[None, :, 2]) - np.maximum(
        extents[:, None, 0], extents[None, :, 0]
    )
    inter_h = np.minimum(extents[:, None, 3], extents[None, :, 3]) - np.maximum(
        extents[:, None, 1], extents[None, :, 1]
    )
    overlap = (inter_w > 0) & (inter_h > 0)
    assert not (overlap & ~np.eye(len(extents), dtype=bool)).any()
    # 256-px windows every 128 px, at least half cellular: 11 x 14 candidates (less those touching the box), 6 x 7
    # disjoint at most; each one taken rules out at most its 3 x 3 neighbourhood, so a greedy pick keeps >= 154 / 9
    assert 154 // 9 <= len(everything) <= 6 * 7 and all(
        (min(e[2], 1500) - e[0]) / 256 >= 0.5 for e in extents
    )


def test_extract_patches_gives_annotated_then_background_patches(slide):
    mask = np.ones((200, 300), bool)
    tissue = TissueMask(mask=mask, downsample=(10.0, 10.0), mpp=2.5, slide_dimensions=(3000, 2000))
    boxes = np.array([[100.0, 100.0, 140.0, 140.0], [2000.0, 1500.0, 2050.0, 1560.0]])
    patches = list(
        extract_patches(
            slide, boxes, [1, 0], mpp_out=0.5, size=128, background=0.5, min_background=3, mask=tissue
        )
    )
    assert [p.kind for p in patches] == ["annotation"] * 2 + ["background"] * 3
    first = patches[0]
    assert first.image.shape == (128, 128, 3) and first.labels.tolist() == [1] and first.whole.all()
    assert np.allclose(first.window.to_level0(first.boxes), boxes[:1])
    assert np.array_equal(first.image, read_patch(slide, first.window))
    with pytest.raises(ValueError, match="differ in length"):
        next(extract_patches(slide, boxes, [1], mpp_out=0.5, size=128))
