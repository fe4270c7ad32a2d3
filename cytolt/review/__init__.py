"""Slide review without a GUI: run slides, slide summaries, detection tables and a ranked review queue.

The napari plugin (``plugins/napari-cytolt``) is a thin layer over this package; everything here works and is
tested without napari or Qt. One concept per module:

    run.py      RunSlide, open_run(path)        one slide of a run folder (layout: cytolt.store.RunFolder)
    summary.py  SlideSummary, slide_summary     score, call and counts from report.json, else from the store
    table.py    DetectionTable, shown_mask      a slide's detections as columns; class filter; class_colors
    queue.py    QueueItem, ReviewQueue          per class the top-k cells, best first; decisions into the store
    export.py   export_run, export_slide        per slide QuPath GeoJSON, CSV, COCO into the run (cytolt export)

Cell crops come from :func:`cytolt.report.thumbnails.cell_thumbnail` (the report's gallery uses the same), the
lazy pyramid napari shows from :func:`cytolt.io.slide_pyramid`, and a synthetic run to review from
:func:`cytolt.demo_run.make_demo_run`. Boxes are ``(x0, y0, x1, y1)`` level-0 pixels, pixel ``i`` spanning
``[i, i + 1)``.

Importing this package imports neither napari nor Qt nor mmdet, nor :mod:`cytolt.synth`.
"""

from cytolt.report.thumbnails import cell_thumbnail
from cytolt.review.export import SlideExport, export_run, export_slide
from cytolt.review.queue import QueueItem, ReviewQueue
from cytolt.review.run import RunSlide, open_run, run_params
from cytolt.review.summary import SlideSummary, slide_summary
from cytolt.review.table import DetectionTable, class_colors, detection_table, shown_mask

__all__ = [
    "DetectionTable",
    "QueueItem",
    "ReviewQueue",
    "RunSlide",
    "SlideExport",
    "SlideSummary",
    "cell_thumbnail",
    "class_colors",
    "detection_table",
    "export_run",
    "export_slide",
    "open_run",
    "run_params",
    "shown_mask",
    "slide_summary",
]
