"""Tests of cytolt.store.run_folder: the run layout, slide folder names and finding a run from a path in it."""

from __future__ import annotations

import json
from pathlib import Path

from cytolt.store import RunFolder


def test_layout_paths() -> None:
    run = RunFolder("runs/night")
    assert run.store_path == Path("runs/night/run.sqlite") and run.summary_path == Path(
        "runs/night/summary.csv"
    )
    assert (
        run.report_path("a") == Path("runs/night/a/report.json") and run.page_path("a").name == "report.html"
    )
    assert run.relative_report("a") == "a/report.json"


def test_slide_folders_are_stems_made_unique_in_input_order() -> None:
    slides = ["x/hsil.svs", "y/hsil.tiff", "z/hsil.ome.tiff", "nilm.svs", "w/hsil.svs"]
    # "hsil.ome.tiff" has the stem "hsil.ome": only equal stems get a suffix
    assert RunFolder.slide_folders(slides) == ["hsil", "hsil-2", "hsil.ome", "nilm", "hsil-3"]


def test_locate_and_find_report(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run").create()
    assert not run.exists() and RunFolder.locate(run.path) is None  # no store yet: not a run
    run.store_path.write_bytes(b"")
    slide_dir = run.slide_dir("hsil-2")
    slide_dir.mkdir()
    (slide_dir / "report.json").write_text(json.dumps({"slide": {"name": "hsil.tiff"}}))
    assert RunFolder.locate(run.store_path) == (run, None)
    assert RunFolder.locate(slide_dir) == (run, "hsil-2") == RunFolder.locate(slide_dir / "report.json")
    assert run.find_report("hsil.tiff") == slide_dir / "report.json"  # found by the name the report holds
    assert run.find_report("other.tiff") is None
    moved = tmp_path / "hsil.tiff"
    moved.write_bytes(b"x")
    assert run.locate_slide("/gone/scans/hsil.tiff") == moved  # beside the run folder
