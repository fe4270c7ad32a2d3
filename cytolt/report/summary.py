"""``summary.csv`` of a screening run: one row per slide, made from the slides' reports.

Columns: ``SUMMARY_COLUMNS``, then ``n_<class>`` per class: the cells at or above that class's threshold (the
counts the slide call was made from; empty when no scorer ran). Times in seconds.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY_COLUMNS", "summary_row", "write_summary_csv"]

SUMMARY_COLUMNS = (
    "slide",
    "status",
    "category",
    "adequacy",
    "interpretation",
    "findings",
    "slide_score",
    "detections",
    "tiles",
    "seconds",
    "model_seconds",
    "report",
    "error",
)


def _adequacy(adequacy: Mapping[str, Any] | None) -> str:
    if not adequacy:
        return ""
    if adequacy["status"] == "satisfactory":
        return "satisfactory"
    return "unsatisfactory: " + "; ".join(adequacy["reasons"])


def summary_row(report: Mapping[str, Any], *, report_path: str = "") -> dict[str, Any]:
    """The ``summary.csv`` row of one report (class columns included); ``report_path`` as the run writes it."""
    score = report["score"]
    timings = report["timings"]
    row: dict[str, Any] = {
        "slide": report["slide"]["name"],
        "status": report["status"],
        "category": score["category"] if score else "",
        # "unsatisfactory: <reasons>", so a lab sees why without opening the report
        "adequacy": _adequacy(report.get("adequacy")),
        "interpretation": (report.get("interpretation") or {}).get("bethesda", ""),
        "findings": " ".join((report.get("interpretation") or {}).get("findings", [])),
        "slide_score": f"{score['slide_score']:.4f}" if score else "",
        "detections": report["detections"]["total"],
        "tiles": report["tiles"]["read"],
        "seconds": f"{timings['total']:.2f}" if "total" in timings else "",
        "model_seconds": f"{timings['model']:.2f}" if "model" in timings else "",
        "report": report_path,
        # one line per slide, whatever the error text holds
        "error": " ".join((report["error"] or "").split()),
    }
    for name in report["model"]["classes"]:
        row[f"n_{name}"] = score["counts"].get(name, 0) if score else ""
    return row


def write_summary_csv(
    reports: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    report_paths: Sequence[str] | None = None,
) -> Path:
    """Write one row per report to ``path`` (class columns: the union of the reports' classes, in order)."""
    if report_paths is not None and len(report_paths) != len(reports):
        raise ValueError(f"got {len(report_paths)} report paths for {len(reports)} reports")
    classes: list[str] = []
    for r in reports:
        classes += [c for c in r["model"]["classes"] if c not in classes]
    rows = [
        summary_row(r, report_path="" if report_paths is None else report_paths[i])
        for i, r in enumerate(reports)
    ]
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*SUMMARY_COLUMNS, *(f"n_{c}" for c in classes)], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path
