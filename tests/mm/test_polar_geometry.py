"""PolarMask geometry: ray targets cast in masks, contours from rays, polygons rasterised."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cytolt.losses.polar_iou import RAY_EPS
from cytolt.mm import polar_geometry as geo


def disc(cx: float, cy: float, r: float, size: int = 100) -> torch.Tensor:
    """(1, size, size) mask of the pixels whose centres lie within r of (cx, cy)."""
    c = torch.arange(size, dtype=torch.float32) + 0.5
    return (((c[None, :] - cx) ** 2 + (c[:, None] - cy) ** 2) <= r * r)[None]


def test_angles_are_every_ten_degrees():
    a = geo.ray_angles()
    assert len(a) == 36
    assert torch.allclose(torch.rad2deg(a[:3]), torch.tensor([0.0, 10.0, 20.0]))
    with pytest.raises(ValueError, match="num_rays"):
        geo.ray_angles(2)


def test_disc_rays_are_all_its_radius():
    rays = geo.ray_targets(disc(50, 50, 20), torch.tensor([[50.0, 50.0]]))
    assert rays.shape == (1, 36)
    assert (rays - 20).abs().max() <= 1.0  # sampled every px: within one step of the radius
    assert rays.max() - rays.min() <= 1.0


def test_square_rays_follow_the_sides():
    mask = torch.zeros(1, 100, 100, dtype=torch.bool)
    mask[0, 30:70, 30:70] = True  # pixels 30..69: the square [30, 70) around (50, 50), half-side 20
    rays = geo.ray_targets(mask, torch.tensor([[50.0, 50.0]]), step=0.25)[0]
    a = geo.ray_angles()
    expected = 20.0 / torch.maximum(a.cos().abs(), a.sin().abs())
    assert torch.allclose(rays, expected, atol=0.3)
    assert rays[0].item() == pytest.approx(20.0, abs=0.3) and rays[4 + 0].item() > rays[0].item()
    assert rays[9].item() == pytest.approx(20.0, abs=0.3)  # 90 degrees: straight down
    assert rays[4].item() == pytest.approx(20.0 / math.cos(math.radians(40)), abs=0.3)


def test_rays_pick_each_points_own_mask_and_outside_rays_are_eps():
    masks = torch.cat([disc(30, 30, 10), disc(70, 70, 5)])
    rays = geo.ray_targets(masks, torch.tensor([[30.0, 30.0], [70.0, 70.0]]), torch.tensor([0, 1]))
    assert (rays[0] - 10).abs().max() <= 1.0 and (rays[1] - 5).abs().max() <= 1.0
    # a point just right of a disc: rays pointing away (angle 0) see nothing of it
    rim = geo.ray_targets(disc(50, 50, 10), torch.tensor([[61.0, 50.0]]))[0]
    assert rim[0].item() == pytest.approx(RAY_EPS)
    assert rim[18].item() == pytest.approx(21.0, abs=1.0)  # 180 degrees: across the disc


def test_mass_centres():
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 2:6, 10:14] = True  # square: centre (12, 4)
    masks[1, 0:2, 0:4] = True  # 8 px in row 0-1, columns 0-3 ...
    masks[1, 2:4, 0:2] = True  # ... and 4 more: an L
    centres = geo.mass_centres(masks)
    assert torch.allclose(centres[0], torch.tensor([12.0, 4.0]))
    xs = (8 * 2.0 + 4 * 1.0) / 12  # mean of the column centres
    ys = (8 * 1.0 + 4 * 3.0) / 12
    assert torch.allclose(centres[1], torch.tensor([xs, ys]))
    assert torch.allclose(
        geo.mass_centres(torch.zeros(1, 10, 20, dtype=torch.bool)), torch.tensor([[10.0, 5.0]])
    )


def test_contours_from_rays():
    contour = geo.rays_to_contours(torch.tensor([[10.0, 20.0]]), torch.full((1, 4), 5.0))[0]
    assert torch.allclose(
        contour, torch.tensor([[15.0, 20.0], [10.0, 25.0], [5.0, 20.0], [10.0, 15.0]]), atol=1e-5
    )
    assert torch.allclose(geo.contour_boxes(contour[None]), torch.tensor([[5.0, 15.0, 15.0, 25.0]]))


def test_square_polygon_rasterises_to_its_pixels():
    square = np.array([[30, 30], [70, 30], [70, 70], [30, 70]], dtype=float)
    mask = geo.contour_to_mask(square, 100, 100)
    expected = np.zeros((100, 100), bool)
    expected[30:70, 30:70] = True
    assert (mask == expected).all()
    assert not geo.contour_to_mask(np.full((4, 2), np.nan), 10, 10).any()
    with pytest.raises(ValueError, match="contour"):
        geo.contour_to_mask(np.zeros(4), 10, 10)


@pytest.mark.parametrize("radius", [4.0, 12.0, 30.0])
def test_disc_round_trip(radius):
    mask = disc(50, 50, radius)
    centre = geo.mass_centres(mask)
    contour = geo.rays_to_contours(centre, geo.ray_targets(mask, centre))
    back = geo.contours_to_masks(contour, 100, 100)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > (0.8 if radius < 5 else 0.9)
