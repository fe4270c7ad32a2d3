"""``cytolt screen`` over folders, globs and lists: bad slides, usage errors, Dask options, Ctrl-C (exit 130).

The tile oracle (tests/screen/_tile_oracle.py) stands in for ``cytolt.detect.load``; the SIGINT test runs the
command in a real process, since only a real process receives a signal.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import cytolt.detect
import cytolt.screen
from cytolt.cli.screen import EXIT_INTERRUPTED, EXIT_SOME_FAILED, screen
from cytolt.store import DetectionStore

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _tile_oracle import (  # noqa: E402
    TILE,
    cli_script,
    count_done,
    make_slides,
    make_tile_oracle,
    truncated_copy,
    write_model_dir,
)

OPTIONS = ["--tile-size", "256", "--overlap", "128", "--batch-size", "4", "--read-threads", "1"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three good slides."""
    folder = tmp_path_factory.mktemp("scans")
    make_slides(folder)
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")


def use_oracle(monkeypatch: pytest.MonkeyPatch, slides: list[Path]) -> None:
    monkeypatch.setattr(
        cytolt.detect, "load", lambda model_dir, device=None: make_tile_oracle(slides, **TILE)
    )


def test_a_folder_with_bad_slides_finishes_the_good_ones_and_exits_3(
    scans: Path, model_dir: Path, openslide_fixtures: Path, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    good = []
    for p in sorted(scans.glob("*.tiff")):  # the good slides, linked with their ground truth
        good.append(folder / p.name)
        good[-1].symlink_to(p)
        (folder / f"{p.name}.cells.json").symlink_to(f"{p}.cells.json")
    truncated_copy(good[0], folder / "cut_short.tiff")  # a copy the scanner never finished
    use_oracle(monkeypatch, good)
    run = tmp_path / "run"
    inputs = [
        str(folder),
        str(openslide_fixtures / "unopenable.tiff"),
        str(openslide_fixtures / "unreadable.svs"),
    ]
    result = CliRunner().invoke(screen, [*inputs, "-o", str(run), "--model", str(model_dir), *OPTIONS])

    assert result.exit_code == EXIT_SOME_FAILED, result.output
    failed = {
        line.split(":")[0].removeprefix("FAILED "): line
        for line in result.stderr.splitlines()
        if line.startswith("FAILED ")
    }
    assert set(failed) == {"cut_short.tiff", "unopenable.tiff", "unreadable.svs"}
    assert "file is truncated" in failed["cut_short.tiff"]
    assert "Unsupported TIFF compression" in failed["unopenable.tiff"]
    assert "Bogus marker length" in failed["unreadable.svs"]
    names = ["cut_short.tiff", "hsil.tiff", "lsil.tiff", "nilm.tiff", "unopenable.tiff", "unreadable.svs"]
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("done")] == [
        "done   hsil.tiff",
        "done   lsil.tiff",
        "done   nilm.tiff",
    ]
    assert result.stdout.splitlines()[-1] == f"6 slides: 3 done, 3 failed; summary: {run / 'summary.csv'}"
    with open(run / "summary.csv", newline="") as fh:
        rows = {r["slide"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == names
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        records = {Path(r.path).name: r for r in store.slides()}
    for name in names:
        ok = name in ("hsil.tiff", "lsil.tiff", "nilm.tiff")
        assert rows[name]["status"] == records[name].status == ("done" if ok else "failed")
        if not ok:  # the same clear message on stderr, in summary.csv and in run.sqlite
            assert rows[name]["error"] == records[name].error and records[name].error in failed[name]


def test_csv_and_glob_inputs(scans: Path, model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    use_oracle(monkeypatch, sorted(scans.glob("*.tiff")))
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{scans / 'nilm.tiff'},NILM\n")
    run = tmp_path / "run"
    args = [str(listing), str(scans / "[hl]*.tiff"), str(scans / "nilm.tiff"), "-o", str(run)]
    result = CliRunner().invoke(screen, [*args, "--model", str(model_dir), "--quiet", *OPTIONS])
    assert result.exit_code == 0, result.output
    with open(run / "summary.csv", newline="") as fh:
        assert [r["slide"] for r in csv.DictReader(fh)] == ["nilm.tiff", "hsil.tiff", "lsil.tiff"]


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "empty", "folder holds no slide file"),
        (lambda d: d / "*.svs", "pattern matches no slide file"),
        (lambda d: d / "bad.csv", "line 2: no slide path in column 2"),
        (lambda d: d / "nowhere.csv", "slide list not found"),
    ],
    ids=["empty folder", "glob", "csv", "missing csv"],
)
def test_inputs_that_name_no_slide_exit_2(model_dir: Path, tmp_path: Path, make_input, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("label,path\nHSIL\n")
    result = CliRunner().invoke(
        screen, [str(make_input(tmp_path)), "-o", str(tmp_path / "run"), "--model", str(model_dir)]
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_dask_options_reach_the_library(scans: Path, model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    seen: dict = {}

    def fake(slides, model, run_dir, settings, **kwargs):
        seen.update(kwargs, slides=slides, settings=settings)
        raise SystemExit(0)

    monkeypatch.setattr(cytolt.screen, "screen_slides", fake)
    args = [str(scans), "-o", str(tmp_path / "run"), "--model", str(model_dir)]
    extra = ["--workers", "2", "--memory-limit", "3GiB", "--timeout", "90", "--resume"]
    assert CliRunner().invoke(screen, [*args, *extra]).exit_code == 0
    executor = seen["executor"]
    assert isinstance(executor, cytolt.screen.DaskExecutor)
    assert (executor.workers, executor.scheduler, executor.memory_limit) == (2, None, "3GiB")
    assert seen["settings"].timeout == 90 and seen["resume"] is True
    assert [p.name for p in seen["slides"]] == ["hsil.tiff", "lsil.tiff", "nilm.tiff"]
    both = CliRunner().invoke(screen, [*args, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"])
    assert both.exit_code == 2 and "not both" in both.output
    assert CliRunner().invoke(screen, [*args, "--timeout", "0"]).exit_code == 2


def test_ctrl_c_exits_130_keeps_finished_slides_and_resume_completes(
    scans: Path, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    slides = sorted(scans.glob("*.tiff"))
    run = tmp_path / "run"
    script = tmp_path / "screen_with_oracle.py"
    script.write_text(cli_script(slides, delay=0.4))  # about 1.2 s of "model" per slide
    base = [*map(str, slides), "-o", str(run), "--model", str(model_dir), *OPTIONS]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), *base, "--quiet"], stdout=out, stderr=err)
        try:
            give_up = time.monotonic() + 120  # a guard against a hung child, not a timing assertion
            while count_done(run / "run.sqlite") < 1 and proc.poll() is None and time.monotonic() < give_up:
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
    stderr = (tmp_path / "err.txt").read_text()
    assert code == EXIT_INTERRUPTED, stderr
    assert "interrupted:" in stderr and "--resume" in stderr
    with DetectionStore(run / "run.sqlite", readonly=True) as store:
        records = {Path(r.path).name: r for r in store.slides()}
    states = {n: (r.status, r.error) for n, r in records.items()}
    done = sorted(n for n, r in records.items() if r.status == "done")
    assert 1 <= len(done) < len(slides), f"the signal came after the run had finished: {states}"
    for record in records.values():  # the slide in progress says why it stopped (pending: not started yet)
        assert record.status == "done" or (record.status, record.error) in (
            ("failed", "interrupted"),
            ("pending", None),
        ), (states, stderr)
    with open(run / "summary.csv", newline="") as fh:
        assert sorted(r["slide"] for r in csv.DictReader(fh)) == done, (states, stderr)

    use_oracle(monkeypatch, slides)
    result = CliRunner().invoke(screen, [*base, "--resume"])
    assert result.exit_code == 0, (result.output, states)
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("kept")] == [
        f"kept   {n}" for n in sorted(done, key=[p.name for p in slides].index)
    ]
    assert result.stdout.splitlines()[-1].startswith(
        f"3 slides: 3 done ({len(done)} kept from before), 0 failed"
    )
