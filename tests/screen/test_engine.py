"""Tests of cytolt.screen.engine: a synthetic slide screened by an oracle detector, failures, the store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cytolt.aggregate import SlideScorer
from cytolt.detect import Detections, ModelInfo
from cytolt.io import SlideError, open_slide
from cytolt.screen.engine import (
    STAGES,
    attempt_slide,
    default_scorer,
    screen_slide,
    slide_fingerprint,
    tile_grid,
)
from cytolt.screen.recorder import RunRecorder
from cytolt.screen.settings import ScreenSettings
from cytolt.store import DetectionStore, RunFolder
from cytolt.synth import CLASSES, make_slide

sys.path.insert(0, str(Path(__file__).parent))
from _screen_oracle import CUT_SCORE, OracleDetector  # noqa: E402

TOL_PX = 2.0  # level-0 px: the oracle rounds boxes to whole tile pixels (2 level-0 px at 0.5 um/px)


@pytest.fixture(scope="module")
def hsil_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "hsil.tiff"
    make_slide(path, size=(2048, 2048), mpp=0.25, seed=1, label="HSIL")
    return path


class NullDetector:
    """A detector that finds nothing: for failure paths where the slide never gets to the model."""

    def __init__(self, mpp: float | None = None, *, answers: int | None = None) -> None:
        self.info = ModelInfo(classes=("a", "hsil"), mpp=mpp, path=Path("null"))
        self.device = torch.device("cpu")
        self.answers = answers  # how many results to return per call (None: one per image)

    def predict(self, images: torch.Tensor) -> list[Detections]:
        n = len(images) if self.answers is None else self.answers
        return [Detections.empty() for _ in range(n)]


def record(store: DetectionStore, folder: Path, result, *, info: ModelInfo):
    """Record one screened slide as a run would (RunRecorder), no HTML page; returns the recorded result."""
    run_id = store.add_run(model=str(info.path))
    recorder = RunRecorder(
        store,
        RunFolder(folder).create(),
        [result.path],
        run_id=run_id,
        model=info,
        model_name="m",
        html=False,
    )
    recorder.start(0)
    return recorder.record(0, result)


def _same_class_twins(oracle: OracleDetector, iou_min: float = 0.4) -> set[int]:
    """Cells overlapping another cell of their class with IoU >= iou_min: NMS (in the detector or across tiles)
    cannot tell those apart at its 0.5 threshold, whatever the engine does, so they are left out of the check."""
    from torchvision.ops import box_iou

    b = torch.as_tensor(oracle.boxes)
    iou = box_iou(b, b).numpy()
    np.fill_diagonal(iou, 0)
    same = oracle.labels[:, None] == oracle.labels[None, :]
    return set(np.flatnonzero(((iou >= iou_min) & same).any(axis=1)).tolist())


@pytest.mark.parametrize(
    ("mpp", "tile", "overlap", "merge"),
    [(0.5, 256, 128, "nms"), (0.5, 256, 128, "wbf"), (None, 512, 256, "nms")],
    ids=["mpp0.5-nms", "mpp0.5-wbf", "level0-nms"],
)
def test_every_cell_seen_whole_is_found_exactly_once(
    hsil_slide: Path, mpp: float | None, tile: int, overlap: int, merge: str
) -> None:
    oracle = OracleDetector(hsil_slide, tile_size=tile, overlap=overlap, mpp=mpp)
    settings = ScreenSettings(tile_size=tile, overlap=overlap, batch_size=3, read_threads=2, merge=merge)
    result = screen_slide(hsil_slide, oracle, settings)
    oracle.close()
    assert result.status == "done" and oracle.seen == result.tiles_read == len(oracle.grid)

    whole = {i for i in range(len(oracle.boxes)) if oracle.whole[i]}
    crossing = {i for i in whole if oracle.cut[i]}  # whole in one tile, cut by another's border
    repeated = {i for i in whole if oracle.whole[i] > 1}  # whole in several tiles: duplicates to merge
    assert len(crossing) >= 20 and len(repeated) >= 20, "the slide must exercise tile borders"
    twins = _same_class_twins(oracle)
    checked = whole - twins
    assert len(checked) >= 0.8 * len(oracle.boxes)

    boxes = result.detections.boxes.numpy()
    labels = result.detections.labels.numpy()
    dist = np.abs(boxes[:, None, :] - oracle.boxes[None, :, :]).max(axis=2)  # (detections, cells)
    match = (dist <= TOL_PX) & (labels[:, None] == oracle.labels[None, :])
    found = match.sum(axis=0)
    wrong = {i: int(found[i]) for i in checked if found[i] != 1}
    assert not wrong, f"cells (index: times found) not found exactly once: {wrong}"
    # Nothing else survives: a detection is a whole cell, or (WBF) the fusion of twin cells; cut views are gone.
    from torchvision.ops import box_iou

    extra = ~match.any(axis=1)
    near_twin = box_iou(torch.as_tensor(boxes[extra], dtype=torch.float64), torch.as_tensor(oracle.boxes))
    assert (near_twin[:, sorted(twins)] >= 0.5).any(dim=1).all(), boxes[extra]
    assert extra.sum() <= len(twins) // 2
    assert not np.isclose(result.detections.scores.numpy(), CUT_SCORE).any()


def test_result_fields_store_and_score(hsil_slide: Path, tmp_path: Path) -> None:
    oracle = OracleDetector(hsil_slide, tile_size=256, overlap=128, mpp=0.5)
    scorer = default_scorer(oracle.info)
    calls: list[tuple[int, int]] = []
    with DetectionStore(tmp_path / "run.sqlite") as store:
        computed = screen_slide(
            hsil_slide,
            oracle,
            ScreenSettings(tile_size=256, overlap=128),
            scorer=scorer,
            progress=lambda done, total: calls.append((done, total)),
        )
        assert computed.slide_id is None and not store.slides()  # screen_slide computes, writes nothing
        result = record(store, tmp_path / "run", computed, info=oracle.info)
        record_ = store.slide(result.slide_id)
        stored, _ = store.query(result.slide_id)
        assert store.class_names == list(CLASSES)
        run_id = store.runs()[-1]["id"]
    oracle.close()
    assert result.dimensions == (2048, 2048) and result.mpp == (0.25, 0.25) and result.read_mpp == (0.5, 0.5)
    assert result.vendor == "generic-tiff" and result.model_name == "oracle"
    assert set(result.timings) == set(STAGES) and result.timings["total"] >= result.timings["model"] > 0
    assert sum(result.counts.values()) == len(result.detections) and list(result.counts) == list(CLASSES)
    assert calls[-1] == (result.tiles_read, result.tiles_read) and len(calls) == -(-result.tiles_read // 8)
    # store: slide row, status, timings, detections with their per-class scores
    assert record_.status == "done" and record_.error is None and record_.run_id == run_id
    assert record_.dims == (2048, 2048) and record_.mpp == (0.25, 0.25)
    assert record_.timings == result.timings and record_.content_hash == slide_fingerprint(hsil_slide)
    assert result.timings["store"] > computed.timings["store"] == 0  # the recorder's writes are timed
    assert len(stored) == len(result.detections) and stored.class_scores is not None
    torch.testing.assert_close(stored.scores.sort().values, result.detections.scores.sort().values)
    # the HSIL slide's planted hsil cells make the call, but its 96 squamous cells are far from Bethesda's 5,000
    assert (
        result.score is not None and result.score.triage == "HSIL+" and result.score.interpretation == "HSIL"
    )
    assert result.score.category == "Unsatisfactory" and not result.score.satisfactory
    assert result.score.adequacy.reasons == (
        f"{result.score.adequacy.squamous_cells} well-visualised squamous cells, fewer than the 5000 required",
    )
    assert result.score.counts["hsil"] == result.counts["hsil"] > 0


def test_open_slide_is_left_open_and_rescreening_replaces_detections(
    hsil_slide: Path, tmp_path: Path
) -> None:
    settings = ScreenSettings(tile_size=256, overlap=128, read_threads=0)
    with DetectionStore(tmp_path / "run.sqlite") as store, open_slide(hsil_slide) as slide:
        for _ in range(2):
            oracle = OracleDetector(hsil_slide, tile_size=256, overlap=128, mpp=0.5, check_pixels=False)
            result = record(store, tmp_path / "run", screen_slide(slide, oracle, settings), info=oracle.info)
            oracle.close()
        assert slide.read_region((0, 0), 0, (4, 4)).shape == (4, 4, 3)  # still open
        assert len(store.slides()) == 1
        assert len(store.query(result.slide_id)[1]) == len(result.detections)


@pytest.mark.parametrize("name", ["unopenable.tiff", "unreadable.svs", "missing.svs"])
def test_bad_slide_raises_slide_error_and_is_recorded(
    openslide_fixtures: Path, tmp_path: Path, name: str
) -> None:
    path = openslide_fixtures / name
    with pytest.raises(SlideError) as info:
        screen_slide(path, NullDetector())
    failed = attempt_slide(path, NullDetector(), ScreenSettings())
    assert failed.status == "failed" and failed.error == str(info.value) and name in failed.error
    assert "open" in failed.timings  # the stages that ran are timed
    with DetectionStore(tmp_path / "run.sqlite") as store:
        record(store, tmp_path / "run", failed, info=NullDetector().info)
        row = store.slide(store.find_slide(path))
    assert row.status == "failed" and row.error == failed.error and "open" in row.timings


def test_detector_returning_too_few_results_fails_the_slide(hsil_slide: Path, tmp_path: Path) -> None:
    settings = ScreenSettings(tile_size=256, batch_size=4, read_mpp=0.5)
    with pytest.raises(ValueError, match="returned 1 results for 4 images"):
        screen_slide(hsil_slide, NullDetector(answers=1), settings)
    failed = attempt_slide(hsil_slide, NullDetector(answers=1), settings)
    assert failed.status == "failed" and failed.error.startswith("ValueError: NullDetector.predict returned")


def test_empty_slide_reads_no_tiles(tmp_path: Path) -> None:
    path = tmp_path / "glass.tiff"
    glass = np.full((512, 512, 3), 242, np.uint8)
    tifffile.imwrite(
        path, glass, tile=(256, 256), photometric="rgb", resolution=(40000, 40000), resolutionunit=3
    )
    result = screen_slide(path, NullDetector(mpp=0.5))
    assert result.status == "done" and result.tiles_read == 0 and result.tiles_total > 0
    assert len(result.detections) == 0 and result.counts == {"a": 0, "hsil": 0}


def test_tile_grid_is_masked_and_row_major(hsil_slide: Path) -> None:
    with open_slide(hsil_slide) as slide:
        grid = tile_grid(slide, tile_size=256, overlap=128, mpp=0.5)
    assert grid.tile_size == (256, 256) and grid.overlap == 128 and grid.mpp == (0.5, 0.5)
    assert grid.coverage is not None  # a tissue mask was applied
    order = grid.rowcol[:, 0] * 10_000 + grid.rowcol[:, 1]
    assert (np.diff(order) > 0).all()


def test_default_scorer_uses_the_bethesda_abnormal_classes() -> None:
    info = ModelInfo(classes=CLASSES, mpp=0.5, path=Path("m"))
    scorer = default_scorer(info)
    assert isinstance(scorer, SlideScorer)
    assert scorer.abnormal_classes == ["ascus", "lsil", "hsil", "scc", "agc"]
    assert scorer.categories == ["HSIL+", "ASC-US+", "NILM"]
    normal = ModelInfo(classes=("cell", "candida"), path=Path("m"))
    assert default_scorer(normal) is None


def test_slide_fingerprint_sees_the_ends_of_the_file(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 << 20)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(data)
    b.write_bytes(data)
    c.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert slide_fingerprint(a) == slide_fingerprint(b) != slide_fingerprint(c)
    assert slide_fingerprint(a).startswith("sha256:") and slide_fingerprint(tmp_path / "none") is None


def test_store_survives_a_kill_during_screening(hsil_slide: Path, tmp_path: Path) -> None:
    """SIGKILL a process screening slide after slide into one store: the file stays sound and every slide it
    finished keeps all its detections (replace_detections is one transaction)."""
    store_path = tmp_path / "run.sqlite"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from _screen_oracle import OracleDetector
        from cytolt.screen.engine import screen_slide
        from cytolt.screen.recorder import RunRecorder
        from cytolt.screen.settings import ScreenSettings
        from cytolt.store import DetectionStore, RunFolder
        from cytolt.synth import cells_path_for
        source = Path({str(hsil_slide)!r})
        store = DetectionStore({str(store_path)!r})
        settings = ScreenSettings(tile_size=256, overlap=128, read_threads=1)
        for k in range(10_000):
            path = Path({str(tmp_path)!r}) / f"copy{{k}}.tiff"  # one slide under many names
            os.symlink(source, path)
            os.symlink(cells_path_for(source), cells_path_for(path))
            oracle = OracleDetector(path, tile_size=256, overlap=128, mpp=0.5, check_pixels=False)
            recorder = RunRecorder(store, RunFolder({str(tmp_path)!r}), [path], run_id=store.add_run(model="o"),
                                   model=oracle.info, model_name="o", html=False)
            recorder.start(0)
            result = recorder.record(0, screen_slide(path, oracle, settings))
            print("done", result.slide_id, len(result.detections), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    finished: dict[int, int] = {}
    try:
        while len(finished) < 3:
            line = proc.stdout.readline()
            assert line.startswith("done"), f"child stopped: {line!r}"
            _, sid, n = line.split()
            finished[int(sid)] = int(n)
        time.sleep(0.05)  # land the kill somewhere inside the next slide
    finally:
        proc.kill()  # SIGKILL: no cleanup, possibly mid-transaction
        proc.wait()
    raw = sqlite3.connect(store_path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    expected = next(iter(finished.values()))
    assert set(finished.values()) == {expected} and expected > 0  # same slide, same detections
    with DetectionStore(store_path) as store:
        for record in store.slides():
            n = len(store.query(record.id)[1])
            if record.status == "done":
                assert n == expected, (record, n)
            else:  # the slide being screened when killed: all of its detections or none
                assert record.status == "running" and n in (0, expected)
            assert record.id not in finished or record.status == "done"
        n_rows = store._conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
        n_rtree = store._conn.execute("SELECT COUNT(*) FROM detections_rtree").fetchone()[0]
        assert n_rows == n_rtree


def test_a_slide_without_mpp_is_screened_with_the_given_one(hsil_slide: Path, tmp_path: Path) -> None:
    with open_slide(hsil_slide) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    bare = tmp_path / "bare.tiff"
    tifffile.imwrite(bare, pixels[..., :3], tile=(256, 256), photometric="rgb")  # no resolution tags
    with pytest.raises(SlideError, match="give it with --mpp"):
        screen_slide(bare, NullDetector(mpp=0.5))
    settings = ScreenSettings(tile_size=256, batch_size=4, slide_mpp=0.25)
    given = screen_slide(bare, NullDetector(mpp=0.5), settings)
    assert given.status == "done" and given.mpp == (0.25, 0.25) and given.mpp_source == "given"
    assert given.read_mpp == (0.5, 0.5) and given.tiles_read > 0
    own = screen_slide(hsil_slide, NullDetector(mpp=0.5), ScreenSettings(tile_size=256, batch_size=4))
    assert own.mpp_source == "file" and own.tiles_read == given.tiles_read
    # recorded: the store keeps the mpp the slide was screened at, the report says where it came from
    info = NullDetector(mpp=0.5).info
    (tmp_path / "run").mkdir()
    with DetectionStore(tmp_path / "run" / "run.sqlite") as store:
        recorded = record(store, tmp_path / "run", given, info=info)
        assert store.slide(recorded.slide_id).mpp == (0.25, 0.25)
    report = json.loads((tmp_path / "run" / "bare" / "report.json").read_text())
    assert report["slide"]["mpp"] == [0.25, 0.25] and report["slide"]["mpp_source"] == "given"
