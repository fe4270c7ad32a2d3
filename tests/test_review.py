"""cytolt.review: lazy level arrays, run folders, summaries, the review queue, thumbnails (no napari)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cytolt.io import open_slide
from cytolt.review import (
    RUN_STORE,
    ReviewQueue,
    SlideLevelArray,
    _level0,
    cell_thumbnail,
    class_colors,
    detection_table,
    find_report,
    locate_slide,
    make_demo_run,
    open_run,
    run_dir_of,
    shown_mask,
    slide_pyramid,
    slide_summary,
)
from cytolt.store import DetectionStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    # 2048 x 1536 px HSIL slide (two levels), ~55 detections; about 0.5 s.
    return make_demo_run(tmp_path_factory.mktemp("review") / "run", size=(2048, 1536), label="HSIL", seed=1)


@pytest.fixture
def run(demo, tmp_path: Path):
    """The demo run with a store of its own, so reviews stay in one test."""
    (tmp_path / "run").mkdir()
    shutil.copy2(demo.store_path, tmp_path / "run" / RUN_STORE)
    return open_run(tmp_path / "run")


def test_import_pulls_in_no_gui_or_mmdet():
    code = "import sys, cytolt.review; print(sorted(m for m in ('napari', 'qtpy', 'PyQt5', 'mmdet') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("ds", [1.0, 2.0, 4.0, 2.0003, 3.999, 16.01])
def test_level0_position_maps_back_to_the_level_pixel(ds):
    for pos in [0, 1, 7, 1023, 4095, 123457]:
        x = _level0(pos, ds)
        assert int(np.floor(x / ds)) == pos
        assert x == 0 or np.floor((x - 1) / ds) < pos  # and it is the smallest such level-0 coordinate


def test_level_arrays_read_like_numpy_arrays(demo):
    with open_slide(demo.slide_path) as slide:
        levels = slide_pyramid(slide)
        assert [a.shape for a in levels] == [(h, w, 3) for w, h in slide.level_dimensions]
        assert all(a.dtype == np.uint8 and a.ndim == 3 for a in levels)
        for k, level in enumerate(levels):
            w, h = slide.level_dimensions[k]
            full = slide.read_region((0, 0), k, (w, h))
            assert np.array_equal(np.asarray(level), full)
            for key in [
                (slice(10, 50), slice(33, 97)),
                (slice(None, None, 7), slice(5, None, 13)),
                (slice(90, 10, -3), slice(None)),
                (17, slice(40, 60)),
                (slice(3, 9), 11),
                (5, 6),
                (Ellipsis, 1),
                (slice(20, 20), slice(0, 5)),
                (-1, -1, slice(0, 2)),
            ]:
                got = level[key]
                assert got.shape == full[key].shape, key
                assert np.array_equal(got, full[key]), key


def test_level_arrays_refuse_what_would_not_fit(demo):
    with open_slide(demo.slide_path) as slide:
        level = SlideLevelArray(slide, 0, max_pixels=1000)
        with pytest.raises(ValueError, match="max_pixels"):
            np.asarray(level)
        assert level[:10, :10].shape == (10, 10, 3)  # slices still read
        with pytest.raises(IndexError):
            level[slide.dimensions[1]]
        with pytest.raises(TypeError, match="ints, slices"):
            level[[1, 2]]
        with pytest.raises(ValueError, match="level must be in"):
            SlideLevelArray(slide, slide.level_count)


def test_run_dir_of_accepts_the_run_its_store_and_a_report_folder(run, tmp_path):
    report_dir = run.run_dir / "demo_hsil_1"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps({"slide": {"name": run.name}}))
    assert run_dir_of(run.run_dir) == (run.run_dir, None)
    assert run_dir_of(run.store_path) == (run.run_dir, None)
    assert run_dir_of(report_dir) == (run.run_dir, "demo_hsil_1")
    assert run_dir_of(report_dir / "report.json") == (run.run_dir, "demo_hsil_1")
    assert run_dir_of(tmp_path / "nothing") is None
    assert run_dir_of(run.slide_path) is None
    with pytest.raises(ValueError, match="not a cytolt run folder"):
        open_run(tmp_path / "nothing")
    assert open_run(report_dir).slide_id == run.slide_id
    with pytest.raises(ValueError, match="no slide 'other.svs'"):
        open_run(run.run_dir, slide="other.svs")


def test_a_moved_slide_is_found_beside_the_run(run, tmp_path):
    assert locate_slide(run.stored_path, run.run_dir) == Path(run.stored_path)
    moved = tmp_path / "elsewhere" / "x.tiff"
    assert locate_slide(moved, run.run_dir) is None
    beside = run.run_dir.parent / "x.tiff"
    beside.write_bytes(b"")
    assert locate_slide(moved, run.run_dir) == beside
    inside = run.run_dir / "x.tiff"
    inside.write_bytes(b"")
    assert locate_slide(moved, run.run_dir) == inside  # the run folder first


def test_report_is_found_by_the_slide_name_it_holds(run):
    assert find_report(run.run_dir, run.name) is None
    renamed = run.run_dir / "renamed-folder"
    renamed.mkdir()
    (renamed / "report.json").write_text(json.dumps({"slide": {"name": run.name}}))
    (run.run_dir / "other").mkdir()
    (run.run_dir / "other" / "report.json").write_text(json.dumps({"slide": {"name": "other.svs"}}))
    assert find_report(run.run_dir, run.name) == renamed / "report.json"
    assert find_report(run.run_dir, "other.svs") == run.run_dir / "other" / "report.json"


def test_summary_prefers_the_report_then_the_run_scorer(run):
    with DetectionStore(run.store_path) as store:
        counts = store.counts(run.slide_id)
        from_scorer = slide_summary(run, store)
        assert from_scorer.source == "scorer"
        assert from_scorer.counts == counts and from_scorer.total == sum(counts.values())
        assert from_scorer.call == "HSIL+" and 0 < from_scorer.score <= 1  # 26 hsil cells, mostly > 0.5
        folder = run.run_dir / "demo_hsil_1"
        folder.mkdir()
        report = {
            "slide": {"name": run.name},
            "score": {"slide_score": 0.42, "category": "ASC-US+", "reason": "made up", "counts": {}},
            "detections": {"total": 3, "per_class": {"hsil": 3}},
        }
        (folder / "report.json").write_text(json.dumps(report))
        summary = slide_summary(open_run(run.run_dir), store)
        assert (summary.source, summary.score, summary.call, summary.total) == ("report", 0.42, "ASC-US+", 3)
        (folder / "report.json").write_text("{broken")
        assert slide_summary(open_run(run.run_dir), store).source == "scorer"


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


def test_queue_ranks_rare_classes_first_and_best_scores_first(run):
    with DetectionStore(run.store_path) as store:
        names = store.class_names
        counts = store.counts(run.slide_id)
        queue = ReviewQueue(store, run.slide_id, per_class=4)
        present = [n for n in names if counts[n]]
        assert queue.classes == present[::-1]  # tail (abnormal) classes first
        assert len(queue) == sum(min(4, counts[n]) for n in present)
        for name in queue.classes:
            items = queue.items_of(name)
            _, ids = store.top_k(run.slide_id, name, 4)
            assert [it.detection_id for it in items] == ids.tolist()
            assert [it.rank for it in items] == list(range(len(items)))
            assert all(a.score >= b.score for a, b in zip(items, items[1:], strict=False))
        assert ReviewQueue(store, run.slide_id, classes=["hsil"]).classes == ["hsil"]
        with pytest.raises(ValueError, match="unknown classes"):
            ReviewQueue(store, run.slide_id, classes=["HSIL"])
        with pytest.raises(ValueError, match="per_class"):
            ReviewQueue(store, run.slide_id, per_class=0)


def test_queue_decisions_reach_the_store_and_survive_reopening(run):
    with DetectionStore(run.store_path) as store:
        queue = ReviewQueue(store, run.slide_id, per_class=3)
        first = queue.current
        queue.decide("accept", reviewer="ann")
        second = queue.next()
        queue.decide("reclassify", reviewer="ann", new_label="lsil")
        queue.decide("reject", reviewer="bob")  # a later decision on the same cell wins
        assert queue.progress == (2, len(queue))
        with pytest.raises(ValueError, match="reviewer"):
            queue.decide("accept", reviewer="")
        assert queue.go(-5) is queue.items[0] and queue.go(10**6) is queue.items[-1]
    with DetectionStore(run.store_path, readonly=True) as store:
        latest = {r.detection_id: r for r in store.reviews(run.slide_id, latest=True)}
        assert latest[first.detection_id].decision == "accept"
        assert (latest[second.detection_id].decision, latest[second.detection_id].reviewer) == (
            "reject",
            "bob",
        )
        assert len(store.reviews(run.slide_id)) == 3  # the audit trail keeps every decision
        again = ReviewQueue(store, run.slide_id, per_class=3)
        assert again.progress == (2, len(again))
        assert again.decision(again.items[0]).decision == "accept"
        assert again.next_unreviewed() is again.items[2]


def test_cell_thumbnail_is_the_box_neighbourhood(demo):
    with open_slide(demo.slide_path) as slide:
        box = (1000.0, 700.0, 1100.0, 760.0)
        thumb = cell_thumbnail(slide, box, size=64, context=1.0)
        assert thumb.shape == (64, 64, 3) and thumb.dtype == np.uint8
        # context 1: the crop is the box's square (100 px from x=1000, y=680) shrunk 100 -> 64
        import cv2

        ref = cv2.resize(
            slide.read_region((1000, 680), 0, (100, 100)), (64, 64), interpolation=cv2.INTER_AREA
        )
        assert np.abs(thumb.astype(int) - ref).max() <= 1
        outlined = cell_thumbnail(slide, box, size=64, context=1.0, color=(255, 0, 255))
        assert np.all(outlined[13, 10:50] == (255, 0, 255))  # top edge of the box at y = 20 * 0.64


def test_class_colors_come_from_the_report_else_the_synth_palette(tmp_path):
    from cytolt.synth import CLASS_COLORS

    assert class_colors(["hsil", "zzz"])[0] == CLASS_COLORS["hsil"]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": {"classes": ["hsil", "zzz"], "colors": [[1, 2, 3], [4, 5, 6]]}}))
    assert class_colors(["hsil", "zzz"], report_path=report) == [(1, 2, 3), (4, 5, 6)]
    assert class_colors(["other"], report_path=report)[0] != (1, 2, 3)  # other classes: report ignored


def test_demo_run_has_the_requested_detections_and_reuses_its_slide(demo, tmp_path):
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
