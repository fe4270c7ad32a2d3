"""Screening on a Dask LocalCluster (2 worker processes) gives what one process gives; a worker death fails
only its slide.

The workers build the pixel-addressed oracle from a pickled ``functools.partial`` (they import ``_tile_oracle``
by name: spawned processes get this process's ``sys.path``).
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from pathlib import Path

import pytest
import torch

from cytolt.screen import DaskExecutor, LocalExecutor, ScreenSettings, screen_slides
from cytolt.store import DetectionStore

sys.path.insert(0, str(Path(__file__).parent))
from _tile_oracle import TILE, make_slides, make_tile_oracle, write_model_dir  # noqa: E402

pytest.importorskip("distributed", reason="needs dask[distributed] (the [dask] extra)")

SETTINGS = ScreenSettings(
    tile_size=TILE["tile_size"], overlap=TILE["overlap"], batch_size=4, read_threads=1, html=False
)


def slide_rows(store: DetectionStore) -> dict[str, tuple]:
    """slide name -> its store row with the wall-clock fields (timing values, update time) left out."""
    return {
        Path(r.path).name: (r.path, r.status, r.error, r.content_hash, r.mpp, r.dims, sorted(r.timings or {}))
        for r in store.slides()
    }


def report_without_times(path: Path) -> dict:
    """A report.json without its wall-clock fields (stage timings, creation time)."""
    report = json.loads(path.read_text())
    report.pop("timings", None)
    report.pop("created", None)
    return report


def test_two_dask_workers_give_the_single_process_results(tmp_path: Path, openslide_fixtures: Path) -> None:
    good = make_slides(tmp_path / "slides")
    (crash,) = make_slides(tmp_path / "slides", [("SCC", 8)])
    bad = openslide_fixtures / "unreadable.svs"
    model_dir = write_model_dir(tmp_path / "model")
    factory = functools.partial(make_tile_oracle, [*good, crash], **TILE)

    local_slides = [good[0], bad, *good[1:]]
    local = screen_slides(
        local_slides, model_dir, tmp_path / "local", SETTINGS, executor=LocalExecutor(factory=factory)
    )
    # The same slides on 2 workers, plus one whose tiles kill the worker process (as a segfault would).
    slides = [good[0], bad, good[1], crash, good[2]]
    workers = DaskExecutor(workers=2, memory_limit="2GiB", factory=functools.partial(factory, crash_on=crash))
    dask = screen_slides(slides, model_dir, tmp_path / "dask", SETTINGS, executor=workers)

    by_path = {r.path: r for r in dask.results}
    assert [r.path for r in dask.results] == slides  # input order, whatever order the workers finished in
    for a in local.results:
        b = by_path[a.path]
        assert (a.status, a.error) == (b.status, b.error)
        if a.ok:
            for name in ("boxes", "scores", "labels", "class_scores"):
                assert torch.equal(getattr(a.detections, name), getattr(b.detections, name)), name
            assert a.counts == b.counts and a.score.to_dict() == b.score.to_dict()
            assert (a.tiles_read, a.tiles_total, a.read_mpp) == (b.tiles_read, b.tiles_total, b.read_mpp)
    assert "Bogus marker length" in by_path[bad].error
    assert by_path[crash].status == "failed" and by_path[crash].error.startswith(
        "worker died while screening"
    )

    # one store, written by the client (the same recorder): identical rows, nothing duplicated
    with (
        DetectionStore(tmp_path / "local" / "run.sqlite", readonly=True) as ls,
        DetectionStore(tmp_path / "dask" / "run.sqlite", readonly=True) as ds,
    ):
        local_rows, dask_rows = slide_rows(ls), slide_rows(ds)
        assert dask_rows.pop(crash.name)[1] == "failed"
        assert local_rows == dask_rows
        for path in [*good, bad]:
            la, da = ls.find_slide(path), ds.find_slide(path)
            assert ls.columns(la)["key"] == ds.columns(da)["key"]
        count = "SELECT COUNT(*) FROM detections"
        assert ls._conn.execute(count).fetchone() == ds._conn.execute(count).fetchone()
        assert ds.runs()[-1]["params"]["executor"] == "LocalCluster(2)"
        assert ls.runs()[-1]["params"]["settings"] == ds.runs()[-1]["params"]["settings"]
    for path in local_slides:  # identical reports, but for the wall-clock timings
        name = path.stem
        local_report = report_without_times(tmp_path / "local" / name / "report.json")
        assert local_report == report_without_times(tmp_path / "dask" / name / "report.json")
    with open(tmp_path / "dask" / "summary.csv", newline="") as fh:
        assert [(r["slide"], r["status"]) for r in csv.DictReader(fh)] == [
            (p.name, "failed" if p in (bad, crash) else "done") for p in slides
        ]
