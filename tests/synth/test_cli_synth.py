"""Tests for cytolt/cli/synth.py through click's CliRunner (kept in tests/synth/ beside the library tests)."""

from __future__ import annotations

import json

import openslide
from click.testing import CliRunner

from cytolt.cli import main
from cytolt.cli.synth import (
    ABNORMAL_CLASS_CHOICES,
    BLUR_CHOICES,
    DEFAULT_BLUR_SIGMA_UM,
    SLIDE_FORMAT_CHOICES,
    SLIDE_LABEL_CHOICES,
)
from cytolt.synth import CLASSES, SLIDE_FORMATS, SLIDE_LABELS
from cytolt.synth.classes import ABNORMAL_CLASSES
from cytolt.synth.slide import BLUR_PRESETS, BLUR_SIGMA_UM


def test_cli_choices_match_the_library():
    assert SLIDE_FORMAT_CHOICES == SLIDE_FORMATS
    assert SLIDE_LABEL_CHOICES == tuple(SLIDE_LABELS)
    assert BLUR_CHOICES == tuple(BLUR_PRESETS) and DEFAULT_BLUR_SIGMA_UM == BLUR_SIGMA_UM
    assert ABNORMAL_CLASS_CHOICES == ABNORMAL_CLASSES


def test_help_lists_both_commands():
    result = CliRunner().invoke(main, ["synth", "--help"])
    assert result.exit_code == 0, result.output
    assert "patches" in result.output and "slide" in result.output
    result = CliRunner().invoke(main, ["synth", "slide", "--help"])
    assert "--label" in result.output and "ASC-US" in result.output
    for option in ("--blur [half|all]", "--blur-sigma UM", "--density", "--abnormal CLASS=N"):
        assert option in result.output


def test_patches_command_writes_a_split_dataset(tmp_path):
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        main,
        [
            "synth",
            "patches",
            str(out),
            "--images",
            "10",
            "--size",
            "256",
            "--imbalance",
            "5",
            "--seed",
            "1",
            "--split",
            "0.6,0.2,0.2",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("train", "val", "test"):
        assert (out / f"annotations_{name}.json").is_file()
    assert len(list((out / "images").iterdir())) == 10
    assert CLASSES[-1] in result.output


def test_patches_command_rejects_a_bad_split(tmp_path):
    result = CliRunner().invoke(
        main, ["synth", "patches", str(tmp_path), "--images", "5", "--split", "0.5,0.5"]
    )
    assert result.exit_code == 2
    assert "three fractions" in result.output


def test_patches_command_reports_an_impossible_imbalance(tmp_path):
    result = CliRunner().invoke(
        main, ["synth", "patches", str(tmp_path), "--images", "1", "--imbalance", "1000", "--quiet"]
    )
    assert result.exit_code == 2 and "needs at least" in result.output


def test_slide_command_writes_an_openslide_readable_slide(tmp_path):
    out = tmp_path / "s.svs"
    result = CliRunner().invoke(
        main,
        [
            "synth",
            "slide",
            str(out),
            "--size",
            "1536",
            "1024",
            "--format",
            "aperio",
            "--label",
            "ASC-US",
            "--seed",
            "3",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    with openslide.OpenSlide(str(out)) as osr:
        assert osr.level_dimensions == ((1536, 1024), (768, 512))
    truth = json.loads((tmp_path / "s.svs.cells.json").read_text())
    assert truth["label"] == "ASC-US" and truth["counts"]["ascus"] >= 6
    assert "s.svs.cells.json" in result.output


def test_slide_command_quality_options(tmp_path):
    out = tmp_path / "q.tiff"
    args = ["synth", "slide", str(out), "--size", "1024", "1024", "--label", "HSIL", "--quiet"]
    quality = ["--blur", "half", "--blur-sigma", "3.5", "--density", "0.5"]
    result = CliRunner().invoke(main, args + quality + ["--abnormal", "hsil=2", "--abnormal", "ASCUS=1"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "q.tiff.cells.json").read_text())
    assert truth["label"] == "HSIL" and truth["abnormal"] == {"ascus": 1, "hsil": 2}
    assert truth["counts"]["hsil"] == 2 and truth["counts"]["lsil"] == 0
    assert truth["blur_regions"] == [[512, 0, 1024, 1024]] and truth["blur_sigma_um"] == 3.5
    assert truth["density"] == 0.5
    assert "blurred: 1 region(s), sigma 3.5 um" in result.output and "squamous cells:" in result.output


def test_slide_command_rejects_bad_quality_options(tmp_path):
    base = ["synth", "slide", str(tmp_path / "x.tiff"), "--size", "256", "256", "--quiet"]
    for extra, message in [
        (["--abnormal", "hsil"], "CLASS=N"),
        (["--abnormal", "candida=2"], "CLASS=N"),
        (["--abnormal", "hsil=1", "--abnormal", "hsil=2"], "given twice"),
        (["--blur-sigma", "2"], "--blur half"),
        (["--density", "-1"], "--density"),
        (["--blur", "left"], "--blur"),
    ]:
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
