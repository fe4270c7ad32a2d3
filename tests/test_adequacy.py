"""Tests of cytolt.adequacy on hand-made tiles and cells: each reason, alone and together."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.adequacy import AdequacyRules, SlideQuality, assess_adequacy

# two tiles side by side: the left one sharp, the right one blurred; both half cellular
TILES = np.array([[0, 0, 100, 100], [100, 0, 100, 100]], dtype=float)
QUALITY = SlideQuality(TILES, np.array([5000.0, 50.0]), np.array([0.5, 0.5]))


def cells(xs: list[float]) -> np.ndarray:
    return np.array([[x - 5, 40, x + 5, 50] for x in xs], dtype=float)


def test_squamous_cells_count_only_in_focus() -> None:
    boxes = cells([20, 40, 60, 150, 170])  # three in the sharp tile, two in the blurred one
    squamous = np.array([True, True, False, True, True])
    result = assess_adequacy(
        AdequacyRules(min_squamous_cells=2, max_out_of_focus=0.6), QUALITY, squamous=squamous, boxes=boxes
    )
    assert result.squamous_cells == 2 and result.satisfactory  # cells 0 and 1; cell 2 is no squamous cell
    assert result.out_of_focus_fraction == pytest.approx(0.5)  # the right tile's half of the cellular area
    strict = assess_adequacy(AdequacyRules(min_squamous_cells=3), QUALITY, squamous=squamous, boxes=boxes)
    assert strict.reasons == ("2 well-visualised squamous cells, fewer than the 3 required",)


def test_every_reason_is_listed() -> None:
    blurred = SlideQuality(TILES, np.array([10.0, 50.0]), np.array([0.5, 0.5]), tiles_unreadable=1)
    result = assess_adequacy(
        AdequacyRules(min_squamous_cells=1), blurred, squamous=np.ones(2, bool), boxes=cells([20, 150])
    )
    assert not result.satisfactory and result.out_of_focus_fraction == 1.0
    assert [r.split(" ")[1] for r in result.reasons] == ["well-visualised", "of", "of"]
    assert result.reasons[1] == "100% of the cellular area is out of focus (more than 75%)"
    assert result.reasons[2] == "1 of 3 tiles could not be read"
    empty = assess_adequacy(
        AdequacyRules(min_squamous_cells=0),
        SlideQuality.empty(),
        squamous=np.zeros(0, bool),
        boxes=np.zeros((0, 4)),
    )
    assert empty.reasons == ("no cellular area found: no tile read holds cells",)
    glass = SlideQuality(TILES, np.array([np.nan, np.nan]), np.array([0.0, 0.01]))
    assert (
        "no cellular area found"
        in assess_adequacy(
            AdequacyRules(min_squamous_cells=0), glass, squamous=np.zeros(0, bool), boxes=np.zeros((0, 4))
        ).reasons[0]
    )


def test_bad_rules() -> None:
    with pytest.raises(ValueError, match="max_out_of_focus"):
        AdequacyRules(max_out_of_focus=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        AdequacyRules(min_squamous_cells=-1)
