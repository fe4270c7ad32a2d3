"""Tests of cytolt.screen.batch in one process: resume rules, failure isolation, timeouts and Ctrl-C.

The detector is the pixel-addressed oracle (``_tile_oracle.TileOracle``), so slides may be screened in any
order and any subset; the model folder is a stand-in whose files give the model identity.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from pathlib import Path

import pytest
import torch

from cytolt.screen import (
    DaskExecutor,
    LocalExecutor,
    RunCallbacks,
    RunSummary,
    ScreeningInterrupted,
    ScreenSettings,
    SlideResult,
    screen_slides,
)
from cytolt.store import DetectionStore

sys.path.insert(0, str(Path(__file__).parent))
from _tile_oracle import TILE, TileOracle, _key, make_slides, make_tile_oracle, write_model_dir  # noqa: E402

RUN = {"tile_size": TILE["tile_size"], "overlap": TILE["overlap"], "batch_size": 4, "read_threads": 1}


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_slides(tmp_path_factory.mktemp("batch-slides"))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")


def oracle_factory(slides: list[Path], **kwargs: object) -> functools.partial:
    return functools.partial(make_tile_oracle, list(slides), **TILE, **kwargs)


def run(
    slides: list[Path],
    model_dir: Path,
    run_dir: Path,
    *,
    factory: object = None,
    resume: bool = False,
    **settings: object,
) -> tuple[RunSummary, list[str]]:
    """Screen and return the summary and, per slide in finishing order, "screened" or "kept"."""
    events: list[str] = []
    summary = screen_slides(
        slides,
        model_dir,
        run_dir,
        ScreenSettings(html=False, **{**RUN, **settings}),  # type: ignore[arg-type]
        executor=LocalExecutor(factory=factory or oracle_factory(slides)),  # type: ignore[arg-type]
        resume=resume,
        callbacks=RunCallbacks(
            on_result=lambda r, _: events.append(f"screened {r.path.name}"),
            on_resumed=lambda r, _: events.append(f"kept {r.path.name}"),
        ),
    )
    return summary, events


def assert_same_result(a: SlideResult, b: SlideResult) -> None:
    """Same detections (exactly, in the same order), counts, score and tile grid."""
    assert a.path == b.path and a.status == b.status == "done"
    for name in ("boxes", "scores", "labels", "class_scores"):
        assert torch.equal(getattr(a.detections, name), getattr(b.detections, name)), name
    assert a.counts == b.counts and a.score.to_dict() == b.score.to_dict()
    for name in (
        "dimensions",
        "mpp",
        "read_mpp",
        "tile_size",
        "overlap",
        "tiles_read",
        "tiles_total",
        "vendor",
    ):
        assert getattr(a, name) == getattr(b, name), name


def stored(run_dir: Path) -> dict[str, tuple[str, int, str]]:
    """slide name -> (status, detection rows, updated) from run.sqlite."""
    with DetectionStore(run_dir / "run.sqlite", readonly=True) as store:
        return {Path(r.path).name: (r.status, len(store.query(r.id)[1]), r.updated) for r in store.slides()}


def detection_rows(run_dir: Path) -> int:
    with DetectionStore(run_dir / "run.sqlite", readonly=True) as store:
        return store._conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0]


def test_resume_keeps_finished_slides_and_screens_the_interrupted_one(
    slides: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    first, events = run(slides, model_dir, tmp_path / "run")
    assert events == [f"screened {p.name}" for p in slides] and first.ok and first.resumed == ()
    rows = detection_rows(tmp_path / "run")
    assert rows == sum(len(r.detections) for r in first.results) > 0
    before = stored(tmp_path / "run")
    with DetectionStore(
        tmp_path / "run" / "run.sqlite"
    ) as store:  # as a kill in the middle of slide 2 leaves it
        store.set_slide_status(first.results[1].slide_id, "running")

    again, events = run(slides, model_dir, tmp_path / "run", resume=True)
    assert events == ["kept nilm.tiff", "kept lsil.tiff", "screened hsil.tiff"]
    assert again.resumed == (slides[0], slides[2]) and again.ok
    for a, b in zip(first.results, again.results, strict=True):  # kept ones rebuilt from the store, exactly
        assert_same_result(a, b)
    after = stored(tmp_path / "run")
    assert (
        after["nilm.tiff"] == before["nilm.tiff"] and after["lsil.tiff"] == before["lsil.tiff"]
    )  # untouched
    assert after["hsil.tiff"][:2] == before["hsil.tiff"][:2] and detection_rows(tmp_path / "run") == rows
    with open(tmp_path / "run" / "summary.csv", newline="") as fh:
        assert [r["slide"] for r in csv.DictReader(fh)] == [
            p.name for p in slides
        ]  # every slide, input order

    # without resume every slide is screened again, and still nothing is duplicated
    _, events = run(slides, model_dir, tmp_path / "run")
    assert events == [f"screened {p.name}" for p in slides] and detection_rows(tmp_path / "run") == rows


def test_resume_screens_a_changed_slide_again(slides: list[Path], model_dir: Path, tmp_path: Path) -> None:
    from cytolt.synth import make_slide

    copies = []
    for p in slides[:2]:  # private copies: one is rewritten below
        copies.append(tmp_path / p.name)
        copies[-1].write_bytes(p.read_bytes())
        (tmp_path / f"{p.name}.cells.json").write_bytes(Path(f"{p}.cells.json").read_bytes())
    first, _ = run(copies, model_dir, tmp_path / "run")
    # same name, new scan
    make_slide(copies[1], size=(1024, 1024), mpp=0.25, seed=9, label="NILM", workers=1)
    again, events = run(copies, model_dir, tmp_path / "run", resume=True)
    assert events == ["kept nilm.tiff", "screened hsil.tiff"]
    assert again.results[1].score.category == "NILM" != first.results[1].score.category


@pytest.mark.parametrize("change", ["model weights", "model.json", "merge", "tile size"])
def test_resume_screens_everything_again_for_another_model_or_grid(
    slides: list[Path], model_dir: Path, tmp_path: Path, change: str
) -> None:
    two = slides[:2]
    run(two, model_dir, tmp_path / "run")
    extra: dict[str, object] = {}
    factory = oracle_factory(two)
    if change == "model weights":
        (model_dir / "model.safetensors").write_bytes(b"other weights")
    elif change == "model.json":
        meta = json.loads((model_dir / "model.json").read_text())
        (model_dir / "model.json").write_text(json.dumps({**meta, "note": "retrained"}))
    elif change == "merge":
        extra["merge"] = "wbf"
    else:
        tile = {**TILE, "tile_size": 384}
        factory = functools.partial(make_tile_oracle, list(two), **tile)
        extra["tile_size"] = 384
    _, events = run(two, model_dir, tmp_path / "run", factory=factory, resume=True, **extra)
    assert events == [f"screened {p.name}" for p in two]


class Tripwire:
    """The tile oracle, raising ``error`` on any tile of ``slide`` (a crash or Ctrl-C inside that slide)."""

    def __init__(self, slides: list[Path], slide: Path, error: BaseException) -> None:
        self.oracle = TileOracle(slides, **TILE)
        self.info, self.device = self.oracle.info, self.oracle.device
        self.trip = set(TileOracle([slide], **TILE).answers)
        self.error = error

    def predict(self, images: torch.Tensor) -> list:
        if any(_key(image.contiguous().numpy()) in self.trip for image in images):
            raise self.error
        return self.oracle.predict(images)


def test_a_crash_inside_one_slide_is_recorded_and_the_run_goes_on(
    slides: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    def factory(device: str | None) -> Tripwire:
        return Tripwire(slides, slides[1], RuntimeError("CUDA error: an illegal read"))

    summary, events = run(slides, model_dir, tmp_path / "run", factory=factory)
    assert [r.status for r in summary.results] == ["done", "failed", "done"]
    assert summary.results[1].error == "RuntimeError: CUDA error: an illegal read"
    assert stored(tmp_path / "run")["hsil.tiff"][0] == "failed" and len(events) == 3


def test_a_slide_past_its_timeout_fails_and_the_run_goes_on(
    slides: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    from cytolt.io import open_slide
    from cytolt.screen import tile_grid

    summary, _ = run(slides, model_dir, tmp_path / "run", timeout=1e-6)
    for path, result in zip(slides, summary.results, strict=True):  # 4 tiles a batch: stops after the first
        with open_slide(path) as slide:
            tiles = len(tile_grid(slide, **TILE))
        assert tiles > 4 and result.status == "failed"
        assert result.error == f"{path}: timed out after 1e-06 s (4 of {tiles} tiles)"
    with DetectionStore(tmp_path / "run" / "run.sqlite", readonly=True) as store:
        records = store.slides()
        assert [r.status for r in records] == ["failed"] * 3 and all("timed out" in r.error for r in records)
        assert all(len(store.query(r.id)[1]) == 0 for r in records)
    # a generous timeout changes nothing
    summary, _ = run(slides, model_dir, tmp_path / "run2", timeout=600)
    assert summary.ok


def test_ctrl_c_keeps_what_finished_and_resume_completes_the_run(
    slides: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    reference, _ = run(slides, model_dir, tmp_path / "reference")

    def factory(device: str | None) -> Tripwire:
        return Tripwire(slides, slides[1], KeyboardInterrupt())

    with pytest.raises(ScreeningInterrupted) as info:
        run(slides, model_dir, tmp_path / "run", factory=factory)
    assert [r.path for r in info.value.summary.results] == [slides[0]]
    assert info.value.unfinished == slides[1:]
    status = stored(tmp_path / "run")
    assert status["nilm.tiff"][0] == "done" and status["hsil.tiff"][:2] == ("failed", 0)
    assert "lsil.tiff" not in status  # never started
    with DetectionStore(tmp_path / "run" / "run.sqlite", readonly=True) as store:
        assert store.slide(store.find_slide(slides[1])).error == "interrupted"
    with open(tmp_path / "run" / "summary.csv", newline="") as fh:
        assert [r["slide"] for r in csv.DictReader(fh)] == ["nilm.tiff"]

    resumed, events = run(slides, model_dir, tmp_path / "run", resume=True)
    assert events == ["kept nilm.tiff", "screened hsil.tiff", "screened lsil.tiff"]
    for a, b in zip(reference.results, resumed.results, strict=True):
        assert_same_result(a, b)
    assert detection_rows(tmp_path / "run") == detection_rows(tmp_path / "reference")


def test_bad_arguments_fail_before_any_slide(slides: list[Path], model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        DaskExecutor(workers=2, scheduler="tcp://localhost:1")
    with pytest.raises(ValueError, match="timeout must be positive"):
        ScreenSettings(timeout=0)
    with pytest.raises(ValueError, match="overlap must be in"):
        ScreenSettings(tile_size=256, overlap=256)
    with pytest.raises(ValueError, match="merge must be one of 'nms', 'wbf'; got 'soft'"):
        ScreenSettings(merge="soft")
    oracle = TileOracle(slides[:1], **TILE)
    with pytest.raises(ValueError, match="runs in this process only"):
        screen_slides(slides, oracle, tmp_path / "d", executor=DaskExecutor(workers=2))
    with pytest.raises(FileNotFoundError, match="model.json is missing"):
        screen_slides(slides, tmp_path, tmp_path / "e")
    assert not any((tmp_path / n).exists() for n in "de")
