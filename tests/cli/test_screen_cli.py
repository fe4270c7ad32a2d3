"""Tests of ``cytolt screen`` through click's runner, with the oracle detector standing in for a model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cytolt.detect
from cytolt.cli.screen import EXIT_SOME_FAILED, screen
from cytolt.report import validate_report
from cytolt.store import DetectionStore, check_qupath_geojson, to_geojson
from cytolt.synth import make_slide

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _screen_oracle import OracleSequence  # noqa: E402
from _tile_oracle import write_model_dir  # noqa: E402

TILE = ["--tile-size", "256", "--overlap", "128", "--batch-size", "4", "--read-threads", "1"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-slides")
    out = {}
    for label, seed in (("NILM", 4), ("HSIL", 5)):
        out[label] = folder / f"{label.lower()}.tiff"
        make_slide(out[label], size=(1024, 1024), mpp=0.25, seed=seed, label=label)
    return out


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder that passes read_model_info; `load` is replaced by the oracle in each test."""
    return write_model_dir(tmp_path / "model")


def _use_oracle(monkeypatch: pytest.MonkeyPatch, screened: list[Path]) -> OracleSequence:
    oracle = OracleSequence(screened, tile_size=256, overlap=128, mpp=0.5)
    monkeypatch.setattr(cytolt.detect, "load", lambda model_dir, device=None: oracle)
    return oracle


def test_bad_slides_are_recorded_and_the_run_goes_on(
    slides: dict[str, Path], model_dir: Path, openslide_fixtures: Path, tmp_path: Path, monkeypatch
) -> None:
    oracle = _use_oracle(monkeypatch, [slides["NILM"], slides["HSIL"]])
    bad, missing = openslide_fixtures / "unreadable.svs", tmp_path / "nowhere.svs"
    run = tmp_path / "run"
    args = [str(slides["NILM"]), str(bad), str(missing), str(slides["HSIL"]), "-o", str(run), "--model"]
    result = CliRunner().invoke(screen, [*args, str(model_dir), *TILE])
    oracle.close()
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "FAILED unreadable.svs" in result.stderr and "FAILED nowhere.svs" in result.stderr
    assert "file not found" in result.stderr
    assert "done   nilm.tiff: NILM" in result.stdout and "done   hsil.tiff: HSIL+" in result.stdout
    assert result.stdout.strip().endswith(f"4 slides: 2 done, 2 failed; summary: {run / 'summary.csv'}")

    # every slide has a valid report; the failed ones say why
    for stem, status in (("nilm", "done"), ("unreadable", "failed"), ("nowhere", "failed"), ("hsil", "done")):
        report = json.loads((run / stem / "report.json").read_text())
        validate_report(report)
        assert report["status"] == status and (report["error"] is None) == (status == "done")
        assert "open" in report["timings"]  # failed slides keep the times screen_slide recorded
        assert (run / stem / "report.html").is_file()
    with open(run / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["slide"], r["status"], r["category"]) for r in rows] == [
        ("nilm.tiff", "done", "NILM"),
        ("unreadable.svs", "failed", ""),
        ("nowhere.svs", "failed", ""),
        ("hsil.tiff", "done", "HSIL+"),
    ]
    # the store has every slide with its status, and QuPath can import what it exports
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        records = {Path(r.path).name: r for r in store.slides()}
        assert {n: r.status for n, r in records.items()} == {
            "nilm.tiff": "done",
            "unreadable.svs": "failed",
            "nowhere.svs": "failed",
            "hsil.tiff": "done",
        }
        assert "Bogus marker length" in records["unreadable.svs"].error
        assert len(store.runs()) == 1 and store.runs()[0]["params"]["settings"]["tile_size"] == 256
        doc = to_geojson(store, records["hsil.tiff"].id, run / "hsil.geojson")
    check_qupath_geojson(doc)
    assert (
        len(doc["features"]) == json.loads((run / "hsil" / "report.json").read_text())["detections"]["total"]
    )
    assert {f["properties"]["objectType"] for f in doc["features"]} == {"detection"}


def test_all_good_exits_0_and_quiet_prints_one_line(
    slides: dict[str, Path], model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    oracle = _use_oracle(monkeypatch, [slides["HSIL"]])
    run = tmp_path / "run"
    result = CliRunner().invoke(
        screen,
        [str(slides["HSIL"]), "-o", str(run), "--model", str(model_dir), "--merge", "wbf", "--quiet", *TILE],
    )
    oracle.close()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"1 slide: 1 done, 0 failed; summary: {run / 'summary.csv'}"]
    assert result.stderr == ""
    settings = DetectionStore(run / "run.sqlite", readonly=True).runs()[0]["params"]["settings"]
    assert settings["merge"] == "wbf" and settings["overlap"] == 128 and settings["read_threads"] == 1


def test_slides_with_the_same_stem_get_their_own_folders(
    slides: dict[str, Path], model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    other = tmp_path / "other" / "hsil.tiff"
    other.parent.mkdir()
    other.symlink_to(slides["HSIL"])
    (other.parent / "hsil.tiff.cells.json").symlink_to(Path(str(slides["HSIL"]) + ".cells.json"))
    oracle = _use_oracle(monkeypatch, [slides["HSIL"], other])
    run = tmp_path / "run"
    result = CliRunner().invoke(
        screen,
        [
            str(slides["HSIL"]),
            str(other),
            str(slides["HSIL"]),
            "-o",
            str(run),
            "--model",
            str(model_dir),
            *TILE,
        ],
    )
    oracle.close()
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [
        "hsil",
        "hsil-2",
    ]  # the repeat is screened once
    a, b = (json.loads((run / d / "report.json").read_text()) for d in ("hsil", "hsil-2"))
    assert a["detections"] == b["detections"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--merge", "soft"], "'soft' is not one of 'nms', 'wbf'"),
        (["--overlap", "256"], "overlap must be in [0, 256) for tile_size 256"),
        (["--batch-size", "0"], "0 is not in the range x>=1"),
        (["--device", "toaster"], "--device"),
    ],
)
def test_usage_errors_exit_2(
    slides: dict[str, Path], model_dir: Path, tmp_path: Path, extra, message
) -> None:
    args = [str(slides["HSIL"]), "-o", str(tmp_path / "run"), "--model", str(model_dir), "--tile-size", "256"]
    result = CliRunner().invoke(screen, [*args, *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_no_model_is_a_usage_error(slides: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        screen, [str(slides["HSIL"]), "-o", str(tmp_path / "run"), "--model", str(tmp_path)]
    )
    assert result.exit_code == 2 and "model.json is missing" in result.output
    assert CliRunner().invoke(screen, ["-o", str(tmp_path / "run"), "--model", str(tmp_path)]).exit_code == 2


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from cytolt.cli.screen import screen;"
        "r = CliRunner().invoke(screen, ['--help']); assert r.exit_code == 0 and 'INPUT...' in r.output;"
        "print(sorted(m for m in ('torch', 'mmdet', 'cytolt.screen', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_engine_reaches_the_detector_factory(
    engine: str, slides: dict[str, Path], model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    oracle = OracleSequence([slides["HSIL"]], tile_size=256, overlap=128, mpp=0.5)
    asked: list[str] = []
    monkeypatch.setattr(
        cytolt.detect, "load", lambda model_dir, device=None, engine="auto": asked.append(engine) or oracle
    )
    run = tmp_path / "run"
    args = [
        str(slides["HSIL"]),
        "-o",
        str(run),
        "--model",
        str(model_dir),
        "--engine",
        engine,
        "--quiet",
        *TILE,
    ]
    result = CliRunner().invoke(screen, args)
    oracle.close()
    assert result.exit_code == 0, result.output
    assert asked == [engine]
