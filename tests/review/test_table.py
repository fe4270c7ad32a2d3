"""cytolt.review.table: detections as columns, the class filter, class colours."""

from __future__ import annotations

import json

import numpy as np

from cytolt.review import class_colors, detection_table, run_params, shown_mask
from cytolt.store import DetectionStore
from cytolt.store.geojson import DEFAULT_COLORS


def test_detection_table_centres_and_filter(run):
    with DetectionStore(run.store_path, readonly=True) as store:
        table = detection_table(store, run.slide_id)
        dets, ids = store.query(run.slide_id)
    assert np.array_equal(table.ids, ids) and len(table) == len(dets)
    b = table.boxes.astype(np.float64)
    # napari's pixel i is centred on i: a box [x0, x1) has its centre at (x0 + x1) / 2 - 0.5
    assert np.allclose(table.centers[:, 1], (b[:, 0] + b[:, 2]) / 2 - 0.5)
    assert np.allclose(table.centers[:, 0], (b[:, 1] + b[:, 3]) / 2 - 0.5)
    assert np.all(table.sizes >= b[:, 2] - b[:, 0]) and np.all(table.sizes >= b[:, 3] - b[:, 1])
    mask = shown_mask(table.labels, table.scores, classes=[8], min_score=0.5)
    assert mask.sum() == np.sum((table.labels == 8) & (table.scores >= 0.5)) > 0
    assert shown_mask(table.labels, table.scores).all()
    assert not shown_mask(table.labels, table.scores, classes=[]).any()


def test_class_colors_come_from_the_report_else_the_run_else_tableau(tmp_path):
    params = {"colors": {"hsil": [230, 40, 40], "bad": "red"}}
    assert class_colors(["hsil", "zzz", "bad"], run_params=params) == [
        (230, 40, 40),
        DEFAULT_COLORS[1],  # not recorded: Tableau 10 by label
        DEFAULT_COLORS[2],  # not a colour
    ]
    assert class_colors(["hsil", "zzz"]) == list(DEFAULT_COLORS[:2])
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": {"classes": ["hsil", "zzz"], "colors": [[1, 2, 3], [4, 5, 6]]}}))
    assert class_colors(["hsil", "zzz"], report_path=report, run_params=params) == [(1, 2, 3), (4, 5, 6)]
    assert class_colors(["other"], report_path=report)[0] != (1, 2, 3)  # other classes: report ignored


def test_the_demo_run_records_the_synth_palette(run):
    from cytolt.synth import CLASS_COLORS

    with DetectionStore(run.store_path, readonly=True) as store:
        names, params = store.class_names, run_params(store, run.slide_id)
    assert class_colors(names, run_params=params) == [CLASS_COLORS[n] for n in names]
