"""cytolt/cli/dataset.py through click's CliRunner (kept in tests/datasets/ beside the library tests)."""

from __future__ import annotations

import inspect
import json

from click.testing import CliRunner

from cytolt.cli import main
from cytolt.cli.dataset import DEFAULT_BACKGROUND, DEFAULT_MIN_VISIBLE, IMAGE_FORMAT_CHOICES
from cytolt.datasets.build import IMAGE_FORMATS, build_dataset


def test_cli_defaults_match_the_library():
    defaults = inspect.signature(build_dataset).parameters
    assert IMAGE_FORMAT_CHOICES == IMAGE_FORMATS
    assert DEFAULT_BACKGROUND == defaults["background"].default
    assert DEFAULT_MIN_VISIBLE == defaults["min_visible"].default


def test_help_explains_the_inputs():
    result = CliRunner().invoke(main, ["dataset", "--help"])
    assert result.exit_code == 0 and "build" in result.output
    result = CliRunner().invoke(main, ["dataset", "build", "--help"])
    assert result.exit_code == 0
    for words in ("QuPath GeoJSON", "--mpp-out", "--drop-unmapped", "--split TRAIN,VAL,TEST", "--mpp FLOAT"):
        assert words in result.output


def test_a_broken_annotation_file_fails_naming_file_and_feature(cohort, tmp_path):
    bad = tmp_path / "slide0.geojson"
    doc = json.loads(cohort.geojson[0].read_text())
    doc["features"][3]["geometry"] = {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}
    bad.write_text(json.dumps(doc))
    args = [
        "dataset",
        "build",
        str(cohort.slides[0]),
        "--annotations",
        str(bad),
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(main, [*args, "--split", "1,0,0"])
    assert result.exit_code == 1
    assert f"{bad}: feature 3: geometry 'LineString' cannot mark a cell" in result.output
    assert not (tmp_path / "o").exists()


def test_unmapped_names_tell_how_to_drop_them(cohort, tmp_path):
    cmap = tmp_path / "map.yaml"
    cmap.write_text("classes: [hsil]\nmap: {HSIL: hsil}\n")
    args = ["dataset", "build", str(cohort.slides[0]), "--annotations", str(cohort.geojson[0])]
    args += ["--class-map", str(cmap), "--out", str(tmp_path / "o"), "--split", "1,0,0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "map to no training class" in result.output and "--drop-unmapped" in result.output
    result = CliRunner().invoke(main, [*args[:-2], "--split", "0.5,0.6,0"])
    assert result.exit_code == 2 and "must sum to 1" in result.output
