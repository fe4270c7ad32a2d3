"""cytolt.review.run: a run slide resolved from any path inside a run folder (cytolt.store.RunFolder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cytolt.review import open_run
from cytolt.store import RunFolder


def test_run_folder_is_found_from_the_run_its_store_and_a_report_folder(run, tmp_path):
    report_dir = run.run_dir / "demo_hsil_1"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps({"slide": {"name": run.name}}))
    folder = RunFolder(run.run_dir)
    assert RunFolder.locate(run.run_dir) == (folder, None)
    assert RunFolder.locate(run.store_path) == (folder, None)
    assert RunFolder.locate(report_dir) == (folder, "demo_hsil_1")
    assert RunFolder.locate(report_dir / "report.json") == (folder, "demo_hsil_1")
    assert RunFolder.locate(tmp_path / "nothing") is None
    assert RunFolder.locate(run.slide_path) is None
    with pytest.raises(ValueError, match="not a cytolt run folder"):
        open_run(tmp_path / "nothing")
    assert open_run(report_dir).slide_id == run.slide_id
    with pytest.raises(ValueError, match="no slide 'other.svs'"):
        open_run(run.run_dir, slide="other.svs")


def test_a_moved_slide_is_found_beside_the_run(run, tmp_path):
    folder = run.run_folder
    assert folder.locate_slide(run.stored_path) == Path(run.stored_path)
    moved = tmp_path / "elsewhere" / "x.tiff"
    assert folder.locate_slide(moved) is None
    beside = run.run_dir.parent / "x.tiff"
    beside.write_bytes(b"")
    assert folder.locate_slide(moved) == beside
    inside = run.run_dir / "x.tiff"
    inside.write_bytes(b"")
    assert folder.locate_slide(moved) == inside  # the run folder first


def test_report_is_found_by_the_slide_name_it_holds(run):
    folder = run.run_folder
    assert folder.find_report(run.name) is None
    renamed = run.run_dir / "renamed-folder"
    renamed.mkdir()
    (renamed / "report.json").write_text(json.dumps({"slide": {"name": run.name}}))
    (run.run_dir / "other").mkdir()
    (run.run_dir / "other" / "report.json").write_text(json.dumps({"slide": {"name": "other.svs"}}))
    assert folder.find_report(run.name) == renamed / "report.json"
    assert folder.find_report("other.svs") == run.run_dir / "other" / "report.json"
    assert open_run(run.run_dir).report_path == renamed / "report.json"
