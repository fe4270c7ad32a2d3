"""Z-stack crops: determinism, the depth model, the defocus slope, and that the in-focus plane is the sharpest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytolt.io.focus import tile_focus
from cytolt.synth import CLASSES
from cytolt.synth.zstack import (
    MAX_NUCLEUS_OFFSET_UM,
    defocus_slope,
    layer_depths,
    make_zstack_crop_set,
    plane_depths,
    render_zstack,
)


def test_defocus_slope_is_half_the_tangent_of_the_half_angle() -> None:
    # NA 0.75 dry: theta = asin(0.75) = 48.59 deg, tan = 0.75 / sqrt(1 - 0.5625) = 1.1339, half = 0.5669.
    assert defocus_slope(0.75) == pytest.approx(0.75 / np.sqrt(1 - 0.75**2) / 2, rel=1e-12)
    assert defocus_slope(0.75) == pytest.approx(0.5669, abs=1e-4)
    # Oil immersion (n = 1.518) at NA 1.3: a wider cone, a steeper blur.
    assert defocus_slope(1.3, 1.518) > defocus_slope(0.75)
    with pytest.raises(ValueError, match="na must be"):
        defocus_slope(1.2)


def test_plane_depths_put_plane_t_over_2_at_zero() -> None:
    np.testing.assert_allclose(plane_depths(5, 1.0), [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(plane_depths(4, 0.5), [-1.0, -0.5, 0.0, 0.5])
    np.testing.assert_allclose(plane_depths(1, 2.0), [0.0])
    with pytest.raises(ValueError, match="planes"):
        plane_depths(0, 1.0)
    with pytest.raises(ValueError, match="step_um"):
        plane_depths(3, 0.0)


def test_same_seed_same_bytes_and_planes_differ() -> None:
    a = render_zstack("lsil", planes=3, size=40, mpp=0.5, seed=(7, 1))
    b = render_zstack("lsil", planes=3, size=40, mpp=0.5, seed=(7, 1))
    assert a.shape == (3, 40, 40, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    # Every plane differs from every other beyond the sensor noise: smoothed 2 px, the noise (std 1.8) leaves
    # about 0.25 grey levels, while the blur moves the cell's edges by tens.
    smooth = [cv2.GaussianBlur(p.astype(np.float32), (0, 0), 2.0) for p in a]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(smooth[i] - smooth[j]).max() > 5.0
    other = render_zstack("lsil", planes=3, size=40, mpp=0.5, seed=(7, 2))
    assert other.tobytes() != a.tobytes()


def test_shared_planes_are_identical_across_stack_sizes() -> None:
    five = render_zstack("hsil", planes=5, size=40, mpp=0.5, seed=3)
    one = render_zstack("hsil", planes=1, size=40, mpp=0.5, seed=3)
    three = render_zstack("hsil", planes=3, size=40, mpp=0.5, seed=3)
    np.testing.assert_array_equal(one[0], five[2])
    np.testing.assert_array_equal(three, five[1:4])


def _central_sharpness(stack: np.ndarray) -> np.ndarray:
    """cytolt.io.focus's variance of the Laplacian on the central half of each plane (where the nucleus is:
    the builders put it within a third of the cell's radius from the centre)."""
    s = stack.shape[1]
    q = s // 4
    sharpness, _ = tile_focus(np.ascontiguousarray(stack[:, q : s - q, q : s - q]))
    return sharpness


@pytest.mark.parametrize("name", ["intermediate", "parabasal", "lsil", "hsil", "scc", "agc", "candida"])
def test_in_focus_plane_is_the_sharpest(name: str) -> None:
    for seed in range(2):
        stack = render_zstack(name, planes=5, step_um=1.0, size=64, mpp=0.5, seed=(11, seed))
        sharp = _central_sharpness(stack)
        assert np.all(np.isfinite(sharp))
        assert int(np.argmax(sharp)) == 2, (name, seed, sharp)
        # Farther from focus is blurrier on each side.
        assert sharp[2] > sharp[1] > sharp[0] and sharp[2] > sharp[3] > sharp[4], (name, seed, sharp)


def test_layer_depths_follow_the_nucleus_size() -> None:
    def offset(name: str) -> float:
        return float(
            np.mean([-layer_depths(name, size=64, mpp=0.5, seed=(5, s))["cytoplasm"] for s in range(6)])
        )

    for name in ("intermediate", "superficial", "lsil", "hsil"):
        for s in range(3):
            d = layer_depths(name, size=64, mpp=0.5, seed=(5, s))
            assert d["nucleus"] == 0.0
            assert 0.0 <= -d["cytoplasm"] <= MAX_NUCLEUS_OFFSET_UM
    # A pyknotic 3.5-5 um nucleus barely rises above the sheet; an 11-15.5 um LSIL nucleus by 2-3 um.
    assert offset("superficial") < 0.5 < offset("intermediate") < offset("lsil")
    # Candida has no hematoxylin part: one layer at the focus.
    assert layer_depths("candida", size=64, mpp=0.5, seed=0)["cell"] == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="label must be one of"):
        render_zstack("koilocyte", size=32, mpp=0.5, seed=0)
    with pytest.raises(ValueError, match="mpp"):
        render_zstack("hsil", size=32, mpp=0.0, seed=0)
    with pytest.raises(ValueError, match="size"):
        render_zstack("hsil", size=4, mpp=0.5, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        make_zstack_crop_set(per_class=[1, 2], size=16)
    with pytest.raises(ValueError, match="classes"):
        make_zstack_crop_set(classes=("hsil", "nope"), size=16)


def test_crop_set_is_long_tailed_and_deterministic() -> None:
    kwargs = {"head": 6, "imbalance": 6, "planes": 3, "size": 24, "mpp": 1.0, "seed": 4}
    images, labels, names = make_zstack_crop_set(**kwargs)
    assert names == CLASSES
    counts = np.bincount(labels, minlength=len(names))
    assert counts[0] == 6 and counts[-1] == 1 and np.all(np.diff(counts) <= 0)
    assert images.shape == (counts.sum(), 3, 24, 24, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.all(np.diff(labels) >= 0)  # class order
    again, labels2, _ = make_zstack_crop_set(**kwargs)
    assert again.tobytes() == images.tobytes() and np.array_equal(labels, labels2)
    assert make_zstack_crop_set(**{**kwargs, "seed": 5})[0].tobytes() != images.tobytes()


def test_crop_set_per_class_and_crop_independence() -> None:
    images, labels, names = make_zstack_crop_set(
        per_class=[2, 0, 1], classes=("hsil", "lsil", "scc"), planes=1, size=24, mpp=1.0, seed=9
    )
    assert names == ("hsil", "lsil", "scc") and labels.tolist() == [0, 0, 2]
    # A class's crops do not depend on the other classes' counts (crop j of class k is seeded (seed, k, j)).
    more, labels_more, _ = make_zstack_crop_set(
        per_class=[2, 3, 1], classes=("hsil", "lsil", "scc"), planes=1, size=24, mpp=1.0, seed=9
    )
    np.testing.assert_array_equal(more[labels_more == 0], images[labels == 0])
    np.testing.assert_array_equal(more[labels_more == 2], images[labels == 2])
