"""Screening on a Dask LocalCluster (2 worker processes) gives what one process gives; a worker death fails
only its slide.

The workers build the pixel-addressed oracle from a pickled ``functools.partial`` (they import ``_tile_oracle``
by name: spawned processes get this process's ``sys.path``).
"""

from __future__ import annotations

import csv
import functools
import sys
from pathlib import Path

import pytest
import torch

from cytolt.screen import screen_slides
from cytolt.store import DetectionStore

sys.path.insert(0, str(Path(__file__).parent))
from _tile_oracle import TILE, make_slides, make_tile_oracle, write_model_dir  # noqa: E402

pytest.importorskip("distributed", reason="needs dask[distributed] (the [dask] extra)")

RUN = {
    "tile_size": TILE["tile_size"],
    "overlap": TILE["overlap"],
    "batch_size": 4,
    "workers": 1,
    "html": False,
}


def test_two_dask_workers_give_the_single_process_results(tmp_path: Path, openslide_fixtures: Path) -> None:
    good = make_slides(tmp_path / "slides")
    (crash,) = make_slides(tmp_path / "slides", [("SCC", 8)])
    bad = openslide_fixtures / "unreadable.svs"
    model_dir = write_model_dir(tmp_path / "model")
    factory = functools.partial(make_tile_oracle, [*good, crash], **TILE)

    local = screen_slides(
        [good[0], bad, *good[1:]], model_dir, tmp_path / "local", detector_factory=factory, **RUN
    )
    # The same slides on 2 workers, plus one whose tiles kill the worker process (as a segfault would).
    slides = [good[0], bad, good[1], crash, good[2]]
    dask = screen_slides(
        slides,
        model_dir,
        tmp_path / "dask",
        detector_factory=functools.partial(factory, crash_on=crash),
        dask_workers=2,
        memory_limit="2GiB",
        **RUN,
    )

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

    # one store, written by the client: same rows as the single process, nothing duplicated
    with (
        DetectionStore(tmp_path / "local" / "run.sqlite", readonly=True) as ls,
        DetectionStore(tmp_path / "dask" / "run.sqlite", readonly=True) as ds,
    ):
        for path in [*good, bad]:
            la, da = ls.slide(ls.find_slide(path)), ds.slide(ds.find_slide(path))
            assert (la.status, la.error, la.content_hash) == (da.status, da.error, da.content_hash)
            assert ls.columns(la.id)["key"] == ds.columns(da.id)["key"]
            # a failed slide's size is known only where the store is written (in-process, not on Dask)
            assert la.dims == da.dims or la.status == "failed"
        assert ds.slide(ds.find_slide(crash)).status == "failed"
        count = "SELECT COUNT(*) FROM detections"
        assert ls._conn.execute(count).fetchone() == ds._conn.execute(count).fetchone()
        assert ds.runs()[-1]["params"]["dask"] == "LocalCluster(2)"
    with open(tmp_path / "dask" / "summary.csv", newline="") as fh:
        assert [(r["slide"], r["status"]) for r in csv.DictReader(fh)] == [
            (p.name, "failed" if p in (bad, crash) else "done") for p in slides
        ]
