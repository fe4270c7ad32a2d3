"""cytolt.demo_run: a synthetic run folder to review, reproducible and cached."""

from __future__ import annotations

from cytolt.demo_run import cached_demo_run, make_demo_run
from cytolt.store import DetectionStore


def test_demo_run_has_the_requested_detections_and_reuses_its_slide(tmp_path):
    demo = make_demo_run(tmp_path / "run", size=(2048, 1536), label="HSIL", seed=1)
    written = demo.slide_path.stat().st_mtime_ns
    slides = demo.slide_path.parent
    few = make_demo_run(tmp_path / "few", size=(2048, 1536), seed=1, slide_dir=slides, n_detections=10)
    many = make_demo_run(tmp_path / "many", size=(2048, 1536), seed=1, slide_dir=slides, n_detections=500)
    assert few.slide_path == many.slide_path == demo.slide_path
    assert demo.slide_path.stat().st_mtime_ns == written  # same recipe: the slide is not written again
    for run, n in ((few, 10), (many, 500)):
        with DetectionStore(run.store_path, readonly=True) as store:
            dets, _ = store.query(run.slide_id)
        assert len(dets) == n
        boxes = dets.boxes.numpy()
        assert (boxes[:, 2] > boxes[:, 0]).all() and boxes[:, 2].max() <= 2048 and boxes[:, 3].max() <= 1536


def test_cached_demo_run_is_built_once(tmp_path):
    first = cached_demo_run(tmp_path / "cache", size=(512, 512), seed=2)
    written = first.store_path.stat().st_mtime_ns
    again = cached_demo_run(tmp_path / "cache", size=(512, 512), seed=2)
    assert again == first and again.store_path.stat().st_mtime_ns == written
    assert (
        first.run_dir == tmp_path / "cache" / "run"
        and first.slide_path.parent == tmp_path / "cache" / "slides"
    )
