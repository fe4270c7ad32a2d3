"""Long-tailed synthetic crops: the counts, determinism per crop, the cell at the centre."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.classify.crops import border_colour
from cytolt.classify.synth_crops import long_tail_counts, make_crop_set


def test_long_tail_counts_are_geometric_from_the_head_with_at_least_one() -> None:
    # 100 * 100 ** (-k / 2) for k = 0, 1, 2
    assert long_tail_counts(3, 100, 100) == [100, 10, 1]
    # 10 * 1000 ** (-k / 3): 10, 1, 0.1 -> 1, 0.01 -> 1
    assert long_tail_counts(4, 10, 1000) == [10, 1, 1, 1]
    assert long_tail_counts(1, 7, 5) == [7]
    assert long_tail_counts(5, 40, 1) == [40] * 5
    with pytest.raises(ValueError, match="imbalance must be >= 1"):
        long_tail_counts(3, 10, 0.5)
    with pytest.raises(ValueError, match="head must be >= 1"):
        long_tail_counts(3, 0, 10)


def test_make_crop_set_follows_the_counts_and_records_where_each_crop_came_from() -> None:
    crops = make_crop_set(
        head=4, imbalance=4, size=32, mpp=1.0, classes=("intermediate", "hsil", "scc"), seed=1
    )
    assert crops.counts().tolist() == [4, 2, 1] and crops.class_names == ("intermediate", "hsil", "scc")
    assert crops.images.shape == (7, 32, 32, 3) and crops.mpp == 1.0 and crops.context == 1.5
    assert [s["id"] for s in crops.sources] == [f"intermediate:{j}" for j in range(4)] + [
        "hsil:0",
        "hsil:1",
        "scc:0",
    ]
    assert crops.info["per_class"] == [4, 2, 1] and crops.info["seed"] == 1
    for s in crops.sources:
        x0, y0, x1, y1 = s["box"]
        field = 32 * s.get("mpp", 1.0)  # the rendered field's side in px at 1 um/px
        assert (x0 + x1) / 2 == pytest.approx(field / 2, abs=0.5) and (y0 + y1) / 2 == pytest.approx(
            field / 2, abs=0.5
        )
        if "mpp" in s:  # zoomed out exactly so that 1.5 x the cell fits
            assert s["mpp"] == pytest.approx(1.5 * max(x1 - x0, y1 - y0) / 32, rel=1e-4)


def test_the_same_seed_gives_identical_crops_and_each_crop_its_own_stream() -> None:
    kw = {"size": 24, "mpp": 1.0, "classes": ("parabasal", "hsil")}
    a = make_crop_set(per_class=[2, 1], seed=3, **kw)
    b = make_crop_set(per_class=[2, 1], seed=3, **kw)
    assert np.array_equal(a.images, b.images) and a.sources == b.sources
    more = make_crop_set(per_class=[3, 1], seed=3, **kw)  # one crop more changes none of the others
    assert np.array_equal(more.images[:2], a.images[:2]) and np.array_equal(more.images[3], a.images[2])
    other = make_crop_set(per_class=[2, 1], seed=4, **kw)
    assert not np.array_equal(other.images, a.images)


def test_the_labelled_cell_sits_at_the_centre_of_its_crop() -> None:
    # hsil: a dark nucleus filling most of a small cell; at 0.5 um/px the 32 px field holds it whole
    crops = make_crop_set(per_class=[4], classes=("hsil",), size=32, mpp=0.5, seed=0)
    for image in crops.images:
        centre = image[13:19, 13:19].astype(np.float64).mean()
        assert centre < border_colour(image).astype(np.float64).mean() - 40


def test_make_crop_set_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="classes must be names of"):
        make_crop_set(per_class=[1], classes=("nucleus",))
    with pytest.raises(ValueError, match="per_class must give 2 counts"):
        make_crop_set(per_class=[1, 2, 3], classes=("hsil", "scc"))
    with pytest.raises(ValueError, match="mpp must be between"):
        make_crop_set(per_class=[1], classes=("hsil",), mpp=0.0)
