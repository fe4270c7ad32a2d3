"""Tests of ``cytolt export RUN`` and ``cytolt screen --export`` through click's runner."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cytolt.detect
from cytolt.cli.export import FORMAT_FILES, export
from cytolt.cli.screen import screen
from cytolt.demo_run import make_demo_run
from cytolt.review import RunSlide
from cytolt.review.export import FORMATS
from cytolt.store import DetectionStore, check_qupath_geojson
from cytolt.synth import make_slide

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _screen_oracle import OracleSequence  # noqa: E402
from _tile_oracle import write_model_dir  # noqa: E402


@pytest.fixture
def demo(tmp_path: Path) -> RunSlide:
    # 1024 x 1024 px HSIL slide at 0.25 um/px, a few tens of detections; well under a second
    return make_demo_run(tmp_path / "run", size=(1024, 1024), label="HSIL", seed=3)


def _features(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    check_qupath_geojson(doc)
    return doc["features"]


def test_help_says_what_is_written_where() -> None:
    assert FORMAT_FILES == FORMATS  # the help's copy of the file names is the library's
    result = CliRunner().invoke(export, ["--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name in FORMATS.values():
        assert name in text
    assert "RUN/<slide folder>/" in text and "OUT/<slide folder>/" in text
    assert "no slide metadata" in text and "no slide path or file name" in text


def test_export_writes_the_chosen_files_with_the_filters(demo: RunSlide, tmp_path: Path) -> None:
    folder = demo.run_dir / Path(demo.name).stem
    args = [str(demo.run_dir), "--format", "geojson,csv", "--min-score", "0.5", "--classes", "hsil,scc"]
    result = CliRunner().invoke(export, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["detections.csv", "detections.geojson"]
    features = _features(folder / "detections.geojson")
    rows = list(csv.DictReader((folder / "detections.csv").open()))
    assert 0 < len(features) == len(rows)
    assert {f["properties"]["classification"]["name"] for f in features} <= {"hsil", "scc"}
    assert min(f["properties"]["measurements"]["score"] for f in features) >= 0.5
    assert f"{demo.name}: {len(rows)} detections -> " in result.stdout
    assert result.stdout.strip().endswith(
        f"exported 1 of 1 slides ({len(rows)} detections) into {demo.run_dir}"
    )

    # a reviewed detection of another class, reclassified to scc: --reviewed-only --classes scc keeps it alone
    with DetectionStore(demo.store_path) as store:
        cols = store.columns(demo.slide_id)
        names = store.class_names
        other = next(int(i) for i, lab in zip(cols["id"], cols["labels"], strict=True) if names[lab] != "scc")
        store.add_review(other, "reclassify", new_label="scc", reviewer="ann")
    out = tmp_path / "exports"
    args = [str(demo.run_dir), "--out", str(out), "--reviewed-only", "--classes", "scc", "--quiet"]
    result = CliRunner().invoke(export, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / folder.name).iterdir()) == sorted(FORMATS.values())
    [feature] = _features(out / folder.name / "detections.geojson")
    assert feature["properties"]["review"]["decision"] == "reclassify"
    assert len(json.loads((out / folder.name / "detections_coco.json").read_text())) == 1
    assert result.stdout.splitlines() == [f"exported 1 of 1 slides (1 detections) into {out}"]


def test_bad_input_is_a_usage_error_naming_it(demo: RunSlide, tmp_path: Path) -> None:
    result = CliRunner().invoke(export, [str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path}: not a cytolt run folder" in result.output
    result = CliRunner().invoke(export, [str(demo.run_dir), "--format", "shp"])
    assert (
        result.exit_code == 2 and "unknown export format shp; choose from geojson, csv, coco" in result.output
    )
    result = CliRunner().invoke(export, [str(demo.run_dir), "--format", ","])
    assert result.exit_code == 2 and "no format named" in result.output
    result = CliRunner().invoke(export, [str(demo.run_dir), "--classes", "HSIL"])
    assert result.exit_code == 2 and "no class ['HSIL'] in this run" in result.output
    assert not (demo.run_dir / Path(demo.name).stem).exists()  # nothing written before the error


def test_screen_export_writes_each_slide_as_it_finishes(tmp_path: Path, monkeypatch) -> None:
    slide = tmp_path / "hsil.tiff"
    make_slide(slide, size=(1024, 1024), mpp=0.25, seed=5, label="HSIL")
    model_dir = write_model_dir(tmp_path / "model")
    run = tmp_path / "run"
    tiles = ["--tile-size", "256", "--overlap", "128", "--batch-size", "4", "--read-threads", "1", "--quiet"]

    def screen_once(*extra: str) -> None:
        oracle = OracleSequence([slide], tile_size=256, overlap=128, mpp=0.5)
        monkeypatch.setattr(cytolt.detect, "load", lambda model_dir, device=None: oracle)
        args = [str(slide), "-o", str(run), "--model", str(model_dir), *tiles, *extra]
        result = CliRunner().invoke(screen, args)
        oracle.close()
        assert result.exit_code == 0, result.output

    screen_once("--export", "geojson")
    folder = run / "hsil"
    assert not (folder / "detections.csv").exists()
    features = _features(folder / "detections.geojson")
    report = json.loads((folder / "report.json").read_text())
    assert len(features) == report["detections"]["total"] > 0
    colors = dict(zip(report["model"]["classes"], report["model"]["colors"], strict=True))
    for f in features:  # the model's colour for each class, as the report shows it
        cls = f["properties"]["classification"]
        assert cls["color"] == list(colors[cls["name"]][:3])
        assert f["properties"]["objectType"] == "detection"
    assert "hsil.tiff" not in (folder / "detections.geojson").read_text()

    # --resume keeps the slide (not screened again) and still exports it
    (folder / "detections.geojson").unlink()
    screen_once("--resume", "--export", "csv", "--export", "coco")
    assert sorted(p.name for p in folder.glob("detections*")) == ["detections.csv", "detections_coco.json"]
    assert len(list(csv.DictReader((folder / "detections.csv").open()))) == len(features)


def test_screen_refuses_an_unknown_export_format(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "model")
    result = CliRunner().invoke(
        screen, ["x.svs", "-o", str(tmp_path / "run"), "--model", str(model_dir), "--export", "pdf"]
    )
    assert result.exit_code == 2 and "unknown export format pdf" in result.output
