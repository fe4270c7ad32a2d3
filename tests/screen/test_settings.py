"""Tests of cytolt.screen.settings: one validated value, filled in for a model, with an identity for resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cytolt.detect import ModelInfo
from cytolt.screen.settings import InvalidSetting, ScreenSettings, default_overlap


def test_default_overlap_holds_a_64um_cell() -> None:
    assert default_overlap(0.5) == 128  # 64 um / 0.5 um per px
    assert default_overlap(0.25) == 256
    assert default_overlap(0.3) == 224  # 213.3 px rounded up to a multiple of 16
    assert default_overlap(None) == 256  # level-0 pixels: 0.25 um/px assumed


def test_for_model_fills_in_the_read_mpp_and_the_overlap_once() -> None:
    model = ModelInfo(classes=("a",), mpp=0.5, path=Path("m"))
    filled = ScreenSettings().for_model(model)
    assert (filled.read_mpp, filled.overlap) == (0.5, 128)
    assert ScreenSettings(tile_size=200).for_model(model).overlap == 100  # at most half a tile
    given = ScreenSettings(read_mpp=0.25, overlap=32).for_model(model)
    assert (given.read_mpp, given.overlap) == (0.25, 32)  # what was given stays
    assert ScreenSettings().for_model(ModelInfo(classes=("a",))).read_mpp is None  # level-0 tiles
    assert filled.for_model(model) == filled


def test_identity_holds_what_changes_detections_only() -> None:
    base = ScreenSettings(tile_size=256, overlap=128, read_mpp=0.5)
    assert base.identity() == {"tile_size": 256, "overlap": 128, "merge": "nms", "read_mpp": 0.5}
    for change in (
        {"batch_size": 2},
        {"read_threads": 0},
        {"device": "cpu"},
        {"timeout": 5.0},
        {"html": False},
    ):
        assert dataclasses.replace(base, **change).identity() == base.identity(), change
    for change in (
        {"tile_size": 512},
        {"overlap": 64},
        {"merge": "wbf"},
        {"read_mpp": 0.25},
        {"slide_mpp": 0.25},
    ):
        assert dataclasses.replace(base, **change).identity() != base.identity(), change
    assert base.to_dict()["batch_size"] == 8 and set(base.identity()) <= set(base.to_dict())


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"merge": "soft"}, "merge", "merge must be one of 'nms', 'wbf'; got 'soft'"),
        ({"tile_size": 0}, "tile_size", "tile_size must be an integer >= 1; got 0"),
        ({"batch_size": 2.5}, "batch_size", "batch_size must be an integer >= 1"),
        ({"read_threads": -1}, "read_threads", "read_threads must be an integer >= 0"),
        ({"tile_size": 256, "overlap": 256}, "overlap", "overlap must be in [0, 256)"),
        ({"read_mpp": -0.5}, "read_mpp", "read_mpp must be positive"),
        ({"timeout": 0}, "timeout", "timeout must be positive"),
        ({"slide_mpp": 0.0}, "slide_mpp", "slide_mpp must be positive microns per pixel"),
        ({"slide_mpp": float("nan")}, "slide_mpp", "slide_mpp must be positive"),
        ({"device": "toaster"}, "device", "'toaster' is not a torch device"),
    ],
)
def test_bad_values_are_refused_where_the_settings_are_built(kwargs: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        ScreenSettings(**kwargs)
    assert info.value.field == field and message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ScreenSettings().tile_size = 5  # type: ignore[misc]
