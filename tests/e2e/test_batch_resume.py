"""A ``cytolt screen`` process killed with SIGKILL part-way, then resumed, ends with exactly the detections of an
uninterrupted run: no slide lost, none duplicated, the finished ones not screened again.

The tile oracle (tests/screen/_tile_oracle.py) stands in for the model, slowed down so the kill lands inside
the run.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import cytolt.detect
from cytolt.cli.screen import screen
from cytolt.store import DetectionStore

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _tile_oracle import (  # noqa: E402
    SLIDE_SEEDS,
    TILE,
    cli_script,
    count_done,
    make_slides,
    make_tile_oracle,
    write_model_dir,
)

OPTIONS = ["--tile-size", "256", "--overlap", "128", "--batch-size", "4", "--read-threads", "1"]


def detections(run_dir: Path) -> dict[str, dict[str, np.ndarray | list[str]]]:
    """Per slide name: its stored detections as columns (key, boxes, labels, scores, class_scores)."""
    with DetectionStore(run_dir / "run.sqlite", readonly=True) as store:
        out = {}
        for record in store.slides():
            cols = store.columns(record.id)
            out[Path(record.path).name] = {k: v for k, v in cols.items() if k != "id"}
        return out


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, monkeypatch) -> None:
    slides = make_slides(tmp_path / "slides", [*SLIDE_SEEDS, ("ASC-H", 7)])
    model_dir = write_model_dir(tmp_path / "model")
    monkeypatch.setattr(
        cytolt.detect, "load", lambda model_dir, device=None: make_tile_oracle(slides, **TILE)
    )

    def cli(run_dir: Path, *extra: str) -> list[str]:
        return [*map(str, slides), "-o", str(run_dir), "--model", str(model_dir), *OPTIONS, *extra]

    reference = CliRunner().invoke(screen, cli(tmp_path / "reference", "--quiet"))
    assert reference.exit_code == 0, reference.output

    run = tmp_path / "run"
    script = tmp_path / "screen_with_oracle.py"
    script.write_text(cli_script(slides, delay=0.4))  # about 1.2 s of "model" per slide
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen([sys.executable, str(script), *cli(run, "--quiet")], stdout=out, stderr=out)
        try:
            give_up = time.monotonic() + 120  # a guard against a hung child, not a timing assertion
            while count_done(run / "run.sqlite") < 1 and proc.poll() is None and time.monotonic() < give_up:
                time.sleep(0.02)
        finally:
            proc.kill()  # SIGKILL: no cleanup at all
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "out.txt").read_text()
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        before = {Path(r.path).name: r for r in store.slides()}
    finished = {name: r.updated for name, r in before.items() if r.status == "done"}
    assert 1 <= len(finished) < len(slides), "the kill came after the run had finished: slow the oracle down"

    resumed = CliRunner().invoke(screen, cli(run, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    kept = [line.split(":")[0].split()[-1] for line in resumed.stdout.splitlines() if line.startswith("kept")]
    assert sorted(kept) == sorted(finished)  # finished slides were skipped, the others screened
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        after = {Path(r.path).name: r for r in store.slides()}
    assert all(after[name].updated == updated for name, updated in finished.items())  # not touched
    assert {r.status for r in after.values()} == {"done"}

    # the same detections as the uninterrupted run, slide by slide, and not one row more
    want, got = detections(tmp_path / "reference"), detections(run)
    assert sorted(want) == sorted(got) == sorted(p.name for p in slides)
    for name in want:
        assert want[name]["key"] == got[name]["key"], name
        for column in ("boxes", "labels", "scores", "class_scores"):
            np.testing.assert_array_equal(want[name][column], got[name][column], err_msg=f"{name} {column}")
    raw = sqlite3.connect(run / "run.sqlite")
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = raw.execute(
            "SELECT (SELECT COUNT(*) FROM detections),"
            " (SELECT COUNT(*) FROM (SELECT DISTINCT slide_id, key FROM detections))"
        ).fetchone()
        rtree = raw.execute("SELECT COUNT(*) FROM detections_rtree").fetchone()[0]
    finally:
        raw.close()
    assert rows[0] == rows[1] == rtree == sum(len(d["key"]) for d in want.values()) > 0
