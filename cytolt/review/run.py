"""One slide of a run folder, resolved from any path inside the run (layout: :mod:`cytolt.store.run_folder`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytolt.store import DetectionStore, RunFolder
from cytolt.store.run_folder import report_slide_name

__all__ = ["RunSlide", "open_run", "run_params"]


@dataclass(frozen=True)
class RunSlide:
    """One slide of a run folder: where its store, pixels and report are.

    ``slide_path`` is None when the file is neither at its stored path nor in or beside the run folder;
    ``report_path`` is None when the run wrote no report for it.
    """

    run_folder: RunFolder
    slide_id: int
    name: str
    stored_path: str
    slide_path: Path | None
    report_path: Path | None
    mpp: tuple[float, float] | None
    status: str

    @property
    def run_dir(self) -> Path:
        return self.run_folder.path

    @property
    def store_path(self) -> Path:
        return self.run_folder.store_path


def open_run(path: str | os.PathLike[str], *, slide: int | str | None = None) -> RunSlide:
    """Resolve a run folder (or its ``run.sqlite``, or one slide's report folder) to one of its slides.

    ``slide`` picks by store id or file name; by default the slide of the report folder given, else the first
    slide whose status is ``done`` (else the first slide). Raises ValueError naming the path when it is no run
    folder or holds no such slide.
    """
    found = RunFolder.locate(path)
    if found is None:
        raise ValueError(f"{path}: not a cytolt run folder (no {RunFolder.STORE} in it or its parent)")
    run, folder = found
    with DetectionStore(run.store_path, readonly=True) as store:
        records = store.slides()
    if not records:
        raise ValueError(f"{run.store_path}: the run has no slides")
    chosen = None
    if isinstance(slide, int):
        chosen = next((r for r in records if r.id == slide), None)
    elif isinstance(slide, str):
        chosen = next((r for r in records if Path(r.path).name == slide), None)
    elif folder is not None:
        name = report_slide_name(run.report_path(folder))
        chosen = next((r for r in records if Path(r.path).name == name), None)
    else:
        chosen = next((r for r in records if r.status == "done"), records[0])
    if chosen is None:
        names = [Path(r.path).name for r in records]
        raise ValueError(f"{run.store_path}: no slide {slide or folder!r} in this run; slides are {names}")
    name = Path(chosen.path).name
    return RunSlide(
        run_folder=run,
        slide_id=chosen.id,
        name=name,
        stored_path=chosen.path,
        slide_path=run.locate_slide(chosen.path),
        report_path=run.find_report(name),
        mpp=chosen.mpp,
        status=chosen.status,
    )


def run_params(store: DetectionStore, slide_id: int) -> Mapping[str, Any]:
    """The parameters the run of a slide recorded (``DetectionStore.add_run(params=...)``); {} when none."""
    run_id = store.slide(slide_id).run_id
    params = next((r["params"] for r in store.runs() if r["id"] == run_id), {})
    return params if isinstance(params, Mapping) else {}
