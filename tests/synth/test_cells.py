"""Tests for cytolt/synth/cells.py: every class builds, scales with mpp, and tail classes differ from their
head look-alikes in the direction the morphology says."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.synth import cells
from cytolt.synth.classes import CLASSES
from cytolt.synth.render import Illumination, Stain, Textures, object_mask, render_region

MPP = 0.5


@pytest.mark.parametrize("name", CLASSES)
def test_builder_gives_a_labelled_object_around_its_centre(name):
    rng = np.random.default_rng(3)
    stain = Stain.sample(rng)
    obj = cells.build(name, rng, 200.0, 150.0, mpp=MPP, stain=stain)
    assert obj.label == name and obj.prims and obj.footprint
    x0, y0, x1, y1 = obj.bbox
    assert x0 < 200 < x1 and y0 < 150 < y1
    assert 8 <= x1 - x0 <= 400 and 8 <= y1 - y0 <= 400  # 4-200 um at 0.5 um/px


def test_size_scales_with_mpp():
    stain = Stain.sample(np.random.default_rng(0))
    small = cells.build("intermediate", np.random.default_rng(5), 0.0, 0.0, mpp=0.5, stain=stain)
    large = cells.build("intermediate", np.random.default_rng(5), 0.0, 0.0, mpp=0.25, stain=stain)
    w_small = small.bbox[2] - small.bbox[0]
    w_large = large.bbox[2] - large.bbox[0]
    assert 1.8 < w_large / w_small < 2.2


def test_unknown_class_lists_the_choices():
    with pytest.raises(ValueError, match="intermediate, superficial"):
        cells.build(
            "koilocyte",
            np.random.default_rng(0),
            0.0,
            0.0,
            mpp=MPP,
            stain=Stain.sample(np.random.default_rng(0)),
        )


def _dark_stats(name: str, n: int = 12) -> tuple[float, float]:
    """Mean over n cells of (dark-pixel area in um^2, dark fraction of the cell mask) at 0.5 um/px."""
    areas, fractions = [], []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        stain = Stain.sample(rng)
        textures = Textures(rng, mpp=MPP, period=256, max_window=300)
        illum = Illumination(amplitude=0.0, period_px=100.0, phase=(0.0, 0.0))
        obj = cells.build(name, rng, 128.0, 128.0, mpp=MPP, stain=stain)
        img = render_region(
            [obj],
            x0=0,
            y0=0,
            width=256,
            height=256,
            mpp=MPP,
            stain=stain,
            textures=textures,
            illumination=illum,
        )
        mask = object_mask(obj, x0=0, y0=0, width=256, height=256)
        dark = (img.astype(np.float32).mean(axis=2) < 120) & mask
        areas.append(dark.sum() * MPP**2)
        fractions.append(dark.sum() / max(mask.sum(), 1))
    return float(np.mean(areas)), float(np.mean(fractions))


def test_ascus_nucleus_is_larger_than_intermediate():
    normal, _ = _dark_stats("intermediate")
    atypical, _ = _dark_stats("ascus")
    assert atypical > 1.8 * normal  # BTS: ASC-US nucleus 2.5-3x the intermediate nucleus area


def test_hsil_has_a_higher_nc_ratio_than_parabasal():
    _, parabasal = _dark_stats("parabasal")
    _, high_grade = _dark_stats("hsil")
    assert high_grade > 2.0 * parabasal


def test_clutter_follows_its_density_and_is_unlabelled():
    rng = np.random.default_rng(0)
    stain = Stain.sample(rng)
    objs = cells.build_clutter(rng, 1.0, (0.0, 0.0, 2000.0, 2000.0), mpp=MPP, stain=stain)
    expected = sum(rate for _, rate in cells.CLUTTER.values())
    assert 0.8 * expected < len(objs) < 1.2 * expected
    assert all(o.label is None for o in objs)
