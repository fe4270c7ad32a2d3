"""Slide reports of a screening run: ``report.json`` (schema in the package), a self-contained ``report.html``
with thumbnail, cell gallery and score histogram, and the run's ``summary.csv``.

    slide_report(result, class_names=..., colors=...) -> dict    validated against schema/report.schema.json
    write_html(report, slide, path)                              one HTML file, images inlined as PNG
    write_summary_csv(reports, path)                             one row per slide
    cell_thumbnail(slide, box, size=...)                         a cell's crop (gallery, review widget)

Reports carry the slide's file name, never its folder, label/macro images or metadata text (patient data).
Importing this package imports neither mmdet nor napari; matplotlib and jinja2 load only when HTML is written.
"""

from cytolt.report.html import write_html
from cytolt.report.json_report import (
    SCHEMA_VERSION,
    load_schema,
    slide_report,
    validate_report,
    write_report,
)
from cytolt.report.summary import SUMMARY_COLUMNS, summary_row, write_summary_csv
from cytolt.report.thumbnails import cell_thumbnail

__all__ = [
    "SCHEMA_VERSION",
    "SUMMARY_COLUMNS",
    "cell_thumbnail",
    "load_schema",
    "slide_report",
    "summary_row",
    "validate_report",
    "write_html",
    "write_report",
    "write_summary_csv",
]
