"""Tests for cytolt/synth/render.py: compositing, windows that stitch, masks and boxes, defocus."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.synth import cells
from cytolt.synth.render import (
    FILL,
    LINE,
    Defocus,
    Illumination,
    Prim,
    Stain,
    SynthObject,
    Textures,
    blur_margin,
    mask_box,
    object_mask,
    render_region,
)

MPP = 0.5


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(7)
    stain = Stain.sample(rng)
    textures = Textures(rng, mpp=MPP, period=256, max_window=400)
    illumination = Illumination.sample(rng, period_px=900.0)
    objects = [
        cells.build(name, rng, 40.0 + 35 * i, 60.0 + 10 * (i % 3), mpp=MPP, stain=stain)
        for i, name in enumerate(("intermediate", "hsil", "lsil", "candida", "agc", "neutrophil_cluster"))
    ]
    return stain, textures, illumination, objects


def _render(field, x0, y0, w, h, defocus=None):
    stain, textures, illumination, objects = field
    return render_region(
        objects,
        x0=x0,
        y0=y0,
        width=w,
        height=h,
        mpp=MPP,
        stain=stain,
        textures=textures,
        illumination=illumination,
        defocus=defocus,
    )


def test_windows_stitch_into_the_whole(field):
    whole = _render(field, 0, 0, 256, 128)
    left = _render(field, 0, 0, 128, 128)
    right = _render(field, 128, 0, 128, 128)
    assert whole.shape == (128, 256, 3) and whole.dtype == np.uint8
    np.testing.assert_array_equal(np.hstack([left, right]), whole)


def test_render_is_deterministic_and_cells_darken_the_glass(field):
    a = _render(field, 0, 0, 256, 128)
    np.testing.assert_array_equal(a, _render(field, 0, 0, 256, 128))
    stain, textures, illumination, _ = field
    glass = render_region(
        [],
        x0=0,
        y0=0,
        width=256,
        height=128,
        mpp=MPP,
        stain=stain,
        textures=textures,
        illumination=illumination,
    )
    assert a.astype(int).sum() < glass.astype(int).sum() - 256 * 128  # cells absorb light
    assert abs(float(glass.mean()) - float(stain.background.mean())) < 12


def test_overlap_adds_density_independent_of_order():
    rng = np.random.default_rng(0)
    stain = Stain.sample(rng)
    textures = Textures(rng, mpp=MPP, period=64, max_window=128)
    illum = Illumination(amplitude=0.0, period_px=100.0, phase=(0.0, 0.0))
    square = np.array([[8, 8], [40, 8], [40, 40], [8, 40]], np.float32)
    od = stain.od("light_green", 1.0)
    a = SynthObject("intermediate", [Prim(FILL, square, od)], [Prim(FILL, square, od)])
    b = SynthObject("superficial", [Prim(FILL, square + 10, od)], [Prim(FILL, square + 10, od)])
    kw = dict(x0=0, y0=0, width=64, height=64, mpp=MPP, stain=stain, textures=textures, illumination=illum)
    ab = render_region([a, b], **kw)
    np.testing.assert_array_equal(ab, render_region([b, a], **kw))
    single, double = ab[20, 12].astype(int), ab[30, 30].astype(int)
    assert (double[0] < single[0] - 10) and (single[0] < ab[60, 60, 0] - 10)  # red is absorbed by light green


def test_object_mask_and_box_of_a_square_and_a_line():
    square = np.array([[10, 20], [30, 20], [30, 35], [10, 35]], np.float32)
    prim = Prim(FILL, square, np.zeros(3, np.float32))
    obj = SynthObject("hsil", [prim], [prim])
    mask = object_mask(obj, x0=0, y0=0, width=64, height=64)
    assert mask_box(mask) == (10, 20, 31, 36)  # inclusive integer corners, exclusive end
    shifted = object_mask(obj, x0=5, y0=10, width=64, height=64)
    assert mask_box(shifted) == (5, 10, 26, 26)
    line = Prim(
        LINE, np.array([[2, 50], [60, 50]], np.float32), np.zeros(3, np.float32), width=3, closed=False
    )
    box = mask_box(object_mask(SynthObject("candida", [line], [line]), x0=0, y0=0, width=64, height=64))
    assert box is not None and box[1] <= 49 and box[3] >= 52 and box[0] <= 2 and box[2] >= 61
    assert mask_box(np.zeros((5, 5), bool)) is None


def test_moved_object_keeps_shape():
    rng = np.random.default_rng(1)
    obj = cells.build("lsil", rng, 0.0, 0.0, mpp=MPP, stain=Stain.sample(rng))
    moved = obj.moved(100.0, 50.0)
    np.testing.assert_allclose(np.array(moved.bbox) - np.array(obj.bbox), [100, 50, 100, 50], atol=1e-3)
    assert len(moved.prims) == len(obj.prims) and len(moved.footprint) == len(obj.footprint)


def test_texture_window_too_large_is_an_error():
    textures = Textures(np.random.default_rng(0), mpp=MPP, period=32, max_window=40)
    assert len(textures.window(-5, 1000, 40, 40)) == 5
    with pytest.raises(ValueError, match="exceeds max_window"):
        textures.window(0, 0, 41, 10)


def test_blur_margin_covers_three_sigma():
    assert blur_margin(1.0) >= 4 and blur_margin(5.0) >= 16


def test_defocused_windows_stitch_and_leave_the_rest_alone(field):
    defocus = Defocus(12.0, ((100, 10, 200, 120),))  # straddles the seam at x = 128
    whole = _render(field, 0, 0, 256, 128, defocus)
    parts = np.hstack([_render(field, 0, 0, 128, 128, defocus), _render(field, 128, 0, 128, 128, defocus)])
    np.testing.assert_array_equal(parts, whole)
    sharp = _render(field, 0, 0, 256, 128)
    inside = np.zeros(whole.shape[:2], bool)
    inside[10:120, 100:200] = True
    np.testing.assert_array_equal(whole[~inside], sharp[~inside])
    lap = [np.abs(np.diff(img[10:120, 100:200].astype(int), 2, axis=1)).mean() for img in (sharp, whole)]
    assert lap[1] < lap[0] / 2  # what is left inside is the sensor noise, added after the defocus


@pytest.mark.parametrize("sigma", [3.0, 6.0, 12.0])
def test_defocus_blur_has_the_requested_sigma(sigma):
    # A bright square on black: the blurred edge's profile is the Gaussian's cumulative distribution, so
    # the distance between its 16 % and 84 % points is 2 sigma.
    from cytolt.synth.render import _defocus

    image = np.zeros((256, 256, 3), np.uint8)
    image[:, 128:] = 200
    f = Defocus(sigma, ()).factor
    profile = _defocus(image, sigma, f)[128, :, 0].astype(float) / 200
    lo, hi = np.interp([0.16, 0.84], profile[64:192], np.arange(64, 192))
    assert hi - lo == pytest.approx(2 * sigma, rel=0.08)
