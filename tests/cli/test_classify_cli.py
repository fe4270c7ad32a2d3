"""``cytolt classify crops / train / eval / predict`` end to end on tiny synthetic crops, and the error cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cytolt.classify.crops import CONTEXT, LABEL_SOURCES, CropSet
from cytolt.cli import main
from cytolt.cli.classify import DEFAULT_CONTEXT, LABEL_CHOICES, classify
from cytolt.synth import CLASSES


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(classify, [str(a) for a in args])


def _error_line(result: Result) -> str:
    """The one line a bad input prints (exit 2)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_the_helps_copies_are_the_librarys() -> None:
    assert LABEL_CHOICES == LABEL_SOURCES and DEFAULT_CONTEXT == CONTEXT


def test_help_names_the_commands_and_what_they_take() -> None:
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0 and "classify" in top.output
    group = _run("--help")
    assert group.exit_code == 0
    for name in ("crops", "train", "eval", "predict"):
        assert name in group.output
    text = " ".join(_run("crops", "--help").output.split())
    for word in ("--coco", "--images", "--slides", "--run", "--synthetic", "--context", "exactly one"):
        assert word in text
    assert "classifier.safetensors" in " ".join(_run("train", "--help").output.split())
    assert "many > 100, few < 20" in " ".join(_run("eval", "--help").output.split())
    assert "p_<class>" in _run("predict", "--help").output


_PRINTED: dict[str, str] = {}  # what `crops` printed for the fixture's training set


@pytest.fixture(scope="module")
def crop_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crops")
    common = ["--synthetic", "--size", "32", "--head", "20", "--imbalance", "10", "--quiet"]
    train = _run("crops", root / "train", *common, "--seed", "0")
    assert train.exit_code == 0, train.output
    _PRINTED["train"] = train.output
    val = _run("crops", root / "val", *common, "--seed", "1")
    assert val.exit_code == 0, val.output
    return root / "train", root / "val"


def test_crops_writes_a_set_and_prints_its_class_table(crop_sets: tuple[Path, Path]) -> None:
    train, _ = crop_sets
    crops = CropSet.read(train)
    assert crops.size == 32 and crops.mpp == 1.0 and crops.class_names == CLASSES
    assert crops.counts()[0] == 20 and crops.counts()[-1] == 2  # 20 * 10 ** -1
    # the printed table, one row per class: the head's 20 crops are medium-shot (20..100), the tail's 2 few-shot
    rows = {line.split()[0]: line.split()[1:] for line in _PRINTED["train"].splitlines()[3:]}
    assert len(rows) == len(CLASSES)
    assert rows["intermediate"] == ["20", "medium"] and rows["agc"] == ["2", "few"]


def test_train_eval_predict_end_to_end(crop_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = crop_sets
    model = tmp_path / "model"
    result = _run(
        "train", train, model, "--val", val, "--epochs", "1", "--width", "4", "--batch-size", "16", "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in model.iterdir()) == ["classifier.json", "classifier.safetensors"]
    meta = json.loads((model / "classifier.json").read_text())
    assert (
        meta["method"] == "ce"
        and meta["crop_size"] == 32
        and meta["train_counts"] == CropSet.read(train).counts().tolist()
    )
    assert meta["metrics"]["n"] == len(CropSet.read(val)) and "balanced" in result.output

    report_path = tmp_path / "report.json"
    evaluated = _run("eval", model, val, "--json", report_path)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(report_path.read_text())
    assert report["n"] == len(CropSet.read(val)) and set(report["per_class_recall"]) == set(CLASSES)
    assert f"accuracy {report['accuracy']:.3f}" in evaluated.output
    for name in CLASSES:
        assert any(line.split()[:1] == [name] for line in evaluated.output.splitlines())

    preds = tmp_path / "preds.csv"
    predicted = _run("predict", model, val, "--out", preds)
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.DictReader(preds.open()))
    crops = CropSet.read(val)
    assert len(rows) == len(crops)
    assert rows[0]["true"] == CLASSES[int(crops.labels[0])] and rows[0]["source"] == "synthetic"
    assert rows[0]["predicted"] in CLASSES
    probs = [float(rows[0][f"p_{c}"]) for c in CLASSES]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4) and float(rows[0]["score"]) == pytest.approx(max(probs))
    # accuracy from the CSV equals the eval report's
    hits = sum(r["true"] == r["predicted"] for r in rows)
    assert hits / len(rows) == pytest.approx(report["accuracy"])


def test_crops_input_errors(crop_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = crop_sets
    assert "exactly one of" in _error_line(_run("crops", tmp_path / "x"))
    assert "got --coco, --synthetic" in _error_line(
        _run("crops", tmp_path / "x", "--synthetic", "--coco", train / "crops.json", "--images", train)
    )
    assert "--coco and --images go together" in _error_line(
        _run("crops", tmp_path / "x", "--coco", train / "crops.json")
    )
    assert "already holds a crop set" in _error_line(_run("crops", train, "--synthetic"))
    bad = _error_line(_run("crops", tmp_path / "x", "--coco", train / "crops.json", "--images", train))
    assert "crops.json: not a COCO instance file" in bad


def test_train_eval_predict_input_errors(crop_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = crop_sets
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty is not a crop set: crops.json is missing" in _error_line(
        _run("train", empty, tmp_path / "m")
    )
    assert "is not a cytolt classifier folder" in _error_line(_run("eval", empty, val))
    unknown = _error_line(
        _run("train", train, tmp_path / "m", "--method", "nope", "--epochs", "1", "--quiet")
    )
    assert "nope" in unknown
    small = tmp_path / "small"
    made = _run("crops", small, "--synthetic", "--size", "16", "--head", "4", "--imbalance", "4", "--quiet")
    assert made.exit_code == 0, made.output
    assert "crops of 16 px at 1 um/px" in _error_line(_run("train", train, tmp_path / "m", "--val", small))
    model = tmp_path / "model"
    trained = _run("train", train, model, "--epochs", "1", "--width", "2", "--quiet")
    assert trained.exit_code == 0, trained.output
    line = _error_line(_run("eval", model, small))
    assert "small: crops of 16 px, the classifier takes 32 px" in line
    assert "crops of 16 px" in _error_line(_run("predict", model, small, "--out", tmp_path / "p.csv"))
