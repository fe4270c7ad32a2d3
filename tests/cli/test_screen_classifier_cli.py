"""``cytolt screen --classifier``: a folder that cannot serve fails before any slide; a run shows both scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cytolt.detect
from cytolt.cli.screen import screen
from cytolt.report import validate_report
from cytolt.synth import CLASSES, make_slide

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _classifier_folder import write_classifier  # noqa: E402
from _screen_oracle import OracleSequence  # noqa: E402
from _tile_oracle import write_model_dir  # noqa: E402

TILE = ["--tile-size", "256", "--overlap", "128", "--batch-size", "4", "--read-threads", "1"]


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-cls-slides") / "hsil.tiff"
    make_slide(path, size=(1024, 1024), mpp=0.25, seed=5, label="HSIL")
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_classifier(tmp_path_factory.mktemp("cls") / "cells")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(model_dir, device=None):
        raise AssertionError("the model was loaded: the classifier should have been refused first")

    monkeypatch.setattr(cytolt.detect, "load", load)


def _args(slide: Path, run: Path, model_dir: Path, *extra: str) -> list[str]:
    return [str(slide), "-o", str(run), "--model", str(model_dir), *TILE, "--quiet", *extra]


def test_a_missing_classifier_folder_fails_before_any_slide(
    slide: Path, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    _no_model(monkeypatch)
    run, missing = tmp_path / "run", tmp_path / "no_such_classifier"
    result = CliRunner().invoke(screen, _args(slide, run, model_dir, "--classifier", str(missing)))
    assert result.exit_code == 2, result.output
    assert "--classifier" in result.output and "no_such_classifier" in result.output
    assert "not a readable folder" in result.output
    assert not run.exists()  # nothing was written: no run folder, no store


def test_a_folder_that_is_no_classifier_fails_before_any_slide(
    slide: Path, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    _no_model(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(screen, _args(slide, tmp_path / "run", model_dir, "--classifier", str(empty)))
    assert result.exit_code == 2, result.output
    assert "--classifier" in result.output and str(empty) in result.output.replace("\n", "")


def test_a_class_table_mismatch_fails_before_any_slide(
    slide: Path, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    _no_model(monkeypatch)
    other = write_classifier(tmp_path / "other", classes=[f"class{i}" for i in range(len(CLASSES))])
    run = tmp_path / "run"
    result = CliRunner().invoke(screen, _args(slide, run, model_dir, "--classifier", str(other)))
    assert result.exit_code == 2, result.output
    assert "class table does not match" in result.output and "other" in result.output
    assert not run.exists()


def test_a_run_with_the_classifier_reports_both_scores_and_resumes(
    slide: Path, model_dir: Path, classifier: Path, tmp_path: Path, monkeypatch
) -> None:
    run = tmp_path / "run"

    def screen_once(*extra: str) -> dict:
        oracle = OracleSequence([slide], tile_size=256, overlap=128, mpp=0.5)
        monkeypatch.setattr(cytolt.detect, "load", lambda model_dir, device=None: oracle)
        result = CliRunner().invoke(
            screen, _args(slide, run, model_dir, "--classifier", str(classifier), *extra)
        )
        oracle.close()
        assert result.exit_code == 0, result.output
        report = json.loads((run / "hsil" / "report.json").read_text())
        validate_report(report)
        return report

    report = screen_once("--classifier-top-n", "7", "--classifier-combine", "mean")
    block = report["second_stage"]
    assert block["cells_rescored"] == min(7, report["detections"]["total"]) == 7
    assert block["top_n"] == 7 and block["combine"] == "mean" and block["classifier"]["name"] == "cells"
    assert block["classifier"]["crop_size"] == 32 and block["seconds"] > 0
    assert report["timings"]["classify"] > 0
    assert "Second stage: cell classifier" in (run / "hsil" / "report.html").read_text()
    # the same classifier and options again: the slide is kept, its second stage read back from the report
    _no_model(monkeypatch)
    again = CliRunner().invoke(
        screen,
        [*_args(slide, run, model_dir, "--classifier", str(classifier)), "--classifier-top-n", "7"]
        + ["--classifier-combine", "mean", "--resume"],
    )
    assert again.exit_code == 0, again.output
    kept = json.loads((run / "hsil" / "report.json").read_text())
    assert kept["second_stage"]["cells"] == block["cells"]
    # another top n is another result: the slide is screened again
    changed = screen_once("--classifier-top-n", "3", "--resume")
    assert changed["second_stage"]["cells_rescored"] == 3
