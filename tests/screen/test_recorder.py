"""Tests of cytolt.screen.recorder: the slide state machine in the store, reports and summary.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cytolt.detect import Detections, ModelInfo
from cytolt.screen.engine import SlideResult, failed_result, slide_fingerprint
from cytolt.screen.recorder import RunCallbacks, RunRecorder
from cytolt.store import DetectionStore, RunFolder

MODEL = ModelInfo(classes=("nilm", "hsil"), mpp=0.5, path=Path("model"))


def done(path: Path, labels: list[int]) -> SlideResult:
    n = len(labels)
    dets = Detections(
        boxes=[[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(n)], scores=[0.9] * n, labels=labels
    )
    return SlideResult(
        path=path,
        status="done",
        dimensions=(100, 100),
        mpp=(0.25, 0.25),
        detections=dets,
        class_names=MODEL.classes,
        counts={"nilm": labels.count(0), "hsil": labels.count(1)},
        timings={"model": 0.5, "store": 0.0, "total": 1.0},
    )


@pytest.fixture
def slides(tmp_path: Path) -> list[Path]:
    out = []
    for name in ("a.svs", "b.svs", "c.svs", "a.tiff"):
        out.append(tmp_path / "scans" / name)
        out[-1].parent.mkdir(exist_ok=True)
        out[-1].write_bytes(name.encode() * 100)
    return out


def recorder_for(store: DetectionStore, run: RunFolder, slides: list[Path], **kwargs) -> RunRecorder:
    run_id = store.add_run(model="model", model_hash="sha256:x")
    return RunRecorder(store, run, slides, run_id=run_id, model=MODEL, model_name="m", html=False, **kwargs)


def test_states_from_start_to_done_failed_and_interrupted(slides: list[Path], tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run").create()
    seen: list[tuple[str, str]] = []
    callbacks = RunCallbacks(on_result=lambda r, folder: seen.append((r.path.name, folder.name)))
    with DetectionStore(run.store_path) as store:
        old = store.add_slide(slides[0], run_id=store.add_run(model="old"))
        store.set_slide_status(old, "done")
        rec = recorder_for(store, run, slides, callbacks=callbacks)
        rec.claim(0)
        assert store.slide(old).status == "pending"  # joins this run only once started
        sid = rec.start(0)
        row = store.slide(sid)
        assert sid == old and row.status == "running" and row.run_id == rec.run_id
        assert row.content_hash == slide_fingerprint(slides[0])
        recorded = rec.record(0, done(slides[0], [0, 1, 1]))
        row = store.slide(sid)
        assert row.status == "done" and row.dims == (100, 100) and len(store.query(sid)[1]) == 3
        assert recorded.slide_id == sid and recorded.timings["store"] > 0 and row.timings == recorded.timings
        # a failure, and detections that do not fit the model's classes, are both failed rows
        rec.start(1)
        rec.record(1, failed_result(slides[1], "b.svs: cannot read", timings={"open": 0.1}))
        assert (store.slide(rec._ids[1]).status, store.slide(rec._ids[1]).error) == (
            "failed",
            "b.svs: cannot read",
        )
        rec.start(2)
        bad = rec.record(2, done(slides[2], [0, 7]))
        assert (
            bad.status == "failed" and "labels" in bad.error and store.slide(rec._ids[2]).status == "failed"
        )
        # Ctrl-C while slide 3 runs; nothing else was started
        rec.start(3)
        rec.interrupt()
        assert (store.slide(rec._ids[3]).status, store.slide(rec._ids[3]).error) == ("failed", "interrupted")
        assert store.slide(sid).status == "done"
    summary = rec.summary()
    assert [r.path for r in summary.results] == slides[:3] and rec.unfinished() == slides[3:]
    assert [d.name for d in summary.report_dirs] == ["a", "b", "c"]  # a.tiff would be a-2
    assert seen == [("a.svs", "a"), ("b.svs", "b"), ("c.svs", "c")]
    with open(run.summary_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["slide"], r["status"]) for r in rows] == [
        ("a.svs", "done"),
        ("b.svs", "failed"),
        ("c.svs", "failed"),
    ]
    assert all(run.report_path(f).is_file() for f in ("a", "b", "c")) and not run.slide_dir("a-2").exists()


def test_a_kept_slide_is_reported_and_left_alone_in_the_store(slides: list[Path], tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run").create()
    kept: list[str] = []
    with DetectionStore(run.store_path) as store:
        rec = recorder_for(store, run, slides[:1])
        rec.start(0)
        first = rec.record(0, done(slides[0], [1]))
        updated = store.slide(first.slide_id).updated
        again = recorder_for(
            store, run, slides[:1], callbacks=RunCallbacks(on_resumed=lambda r, _: kept.append(r.path.name))
        )
        again.keep(0, first)
        assert store.slide(first.slide_id).updated == updated and kept == ["a.svs"]
    assert again.summary().resumed == (slides[0],)
