"""Tests of cytolt.report.summary: one CSV row per slide."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cytolt.report import SUMMARY_COLUMNS, slide_report, write_summary_csv
from cytolt.screen.engine import SlideResult, failed_result
from cytolt.synth import CLASSES


def test_one_row_per_slide_with_class_counts(scored_result: SlideResult, tmp_path: Path) -> None:
    done = slide_report(scored_result)
    failed = slide_report(failed_result("/x/b.svs", "/x/b.svs: cannot read\nlevel 0"))
    path = write_summary_csv(
        [done, failed], tmp_path / "summary.csv", report_paths=["a/report.json", "b/report.json"]
    )
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        fh.seek(0)
        header = next(csv.reader(fh))
    assert header == [*SUMMARY_COLUMNS, *(f"n_{c}" for c in CLASSES)]
    a, b = rows
    assert a["slide"] == "slide7.tiff" and a["status"] == "done" and a["category"] == "HSIL+"
    assert float(a["slide_score"]) == pytest.approx(scored_result.score.slide_score, abs=1e-4)
    assert (
        int(a["detections"]) == len(scored_result.detections) and int(a["tiles"]) == scored_result.tiles_read
    )
    assert float(a["seconds"]) == pytest.approx(scored_result.timings["total"], abs=0.01)
    assert {c: int(a[f"n_{c}"]) for c in CLASSES} == scored_result.score.counts
    assert a["report"] == "a/report.json" and a["error"] == ""
    assert b["slide"] == "b.svs" and b["status"] == "failed" and b["category"] == "" and b["seconds"] == ""
    assert b["error"] == "/x/b.svs: cannot read level 0"  # one line
    assert all(b[f"n_{c}"] == "" for c in CLASSES)  # failed-result has no classes: the columns stay empty


def test_report_paths_must_match(scored_result: SlideResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="got 2 report paths for 1 reports"):
        write_summary_csv([slide_report(scored_result)], tmp_path / "s.csv", report_paths=["a", "b"])
