"""Screen many slides into one run folder: the library side of ``cytolt screen``.

Run folder layout::

    RUN_DIR/run.sqlite              DetectionStore: every slide, its status and error, detections, reviews
    RUN_DIR/<slide stem>/report.json   slide report (cytolt/report/schema/report.schema.json)
    RUN_DIR/<slide stem>/report.html   self-contained page: thumbnail, gallery, histogram
    RUN_DIR/summary.csv             one row per slide (rewritten after each slide, so a stopped run has one)

A slide that cannot be read (:class:`~cytolt.io.SlideError`) is recorded as failed (status and message in the
store, the report and the summary) and the run goes on; any other exception stops the run, since it would
fail every slide the same way (a broken model, a full disk). Two slides with the same stem get folders
``<stem>`` and ``<stem>-2``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.io import SlideError
from cytolt.screen.engine import SlideResult, default_overlap, default_scorer, failed_result, screen_slide

if TYPE_CHECKING:
    import torch

    from cytolt.aggregate import SlideScorer
    from cytolt.detect import Detector

__all__ = ["SCORER_FILE", "RunSummary", "screen_slides"]

# A model folder may hold the slide scorer fit for it (SlideScorer.to_dict() as JSON, docs/aggregate.md).
SCORER_FILE = "scorer.json"


@dataclass(frozen=True)
class RunSummary:
    """What :func:`screen_slides` did: one result and one report folder per slide, in input order."""

    run_dir: Path
    store_path: Path
    results: list[SlideResult]
    report_dirs: list[Path]

    @property
    def failed(self) -> list[SlideResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def screen_slides(
    paths: Sequence[str | os.PathLike[str]],
    model: Detector | str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    tile_size: int = 512,
    overlap: int | None = None,
    workers: int = 2,
    merge: str = "nms",
    scorer: SlideScorer | None = None,
    html: bool = True,
    progress: Callable[[Path, int, int], Any] | None = None,
    on_result: Callable[[SlideResult, Path], Any] | None = None,
) -> RunSummary:
    """Screen ``paths`` with one model and write the run folder (see the module docstring).

    Args:
        paths: slide files; repeats are screened once.
        model: a model folder (``cytolt export-model``), loaded with :func:`cytolt.detect.load`, or a detector.
        run_dir: the run folder, created if missing; an existing ``run.sqlite`` is added to (reviews kept).
        device: for loading a model folder (default: CUDA when available).
        batch_size, tile_size, overlap, workers, merge: as for :func:`~cytolt.screen.screen_slide`.
        scorer: slide scoring; default ``<model folder>/scorer.json`` if there, else
            :func:`~cytolt.screen.engine.default_scorer`.
        html: also write ``report.html`` per slide.
        progress: called as ``progress(slide_path, tiles_done, tiles_total)`` while a slide is read.
        on_result: called as ``on_result(result, report_dir)`` once a slide's reports are written.
    """
    from cytolt.detect import load
    from cytolt.report import slide_report, write_html, write_report, write_summary_csv
    from cytolt.store import DetectionStore

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    detector = load(model, device) if isinstance(model, str | os.PathLike) else model
    info = detector.info
    if scorer is None:
        scorer = _model_scorer(Path(model)) if isinstance(model, str | os.PathLike) else None
        scorer = scorer or default_scorer(info)
    slides = list(dict.fromkeys(Path(p).absolute() for p in paths))
    folders = _report_folders(slides)
    store_path = run_dir / "run.sqlite"
    results: list[SlideResult] = []
    reports: list[dict[str, Any]] = []
    report_names: list[str] = []
    with DetectionStore(store_path) as store:
        run_id = store.add_run(
            model=str(info.path),
            params={
                "tile_size": tile_size,
                "overlap": overlap if overlap is not None else min(default_overlap(info.mpp), tile_size // 2),
                "batch_size": batch_size,
                "workers": workers,
                "merge": merge,
                "mpp": info.mpp,
                "device": str(detector.device),
                "scorer": None if scorer is None else scorer.to_dict(),
            },
        )
        for path, folder in zip(slides, folders, strict=True):
            tick = None if progress is None else (lambda done, total, p=path: progress(p, done, total))
            try:
                result = screen_slide(
                    path,
                    detector,
                    store=store,
                    run_id=run_id,
                    tile_size=tile_size,
                    overlap=overlap,
                    batch_size=batch_size,
                    workers=workers,
                    merge=merge,
                    scorer=scorer,
                    progress=tick,
                )
            except SlideError as exc:
                sid = store.find_slide(path)
                timings = None if sid is None else store.slide(sid).timings  # what screen_slide recorded
                result = failed_result(path, str(exc), detector=detector, slide_id=sid, timings=timings)
            out = run_dir / folder
            out.mkdir(exist_ok=True)
            report = slide_report(result, class_names=info.classes, colors=info.colors)
            write_report(report, out / "report.json")
            if html:
                write_html(report, path if result.ok else None, out / "report.html")
            results.append(result)
            reports.append(report)
            report_names.append(f"{folder}/report.json")
            write_summary_csv(reports, run_dir / "summary.csv", report_paths=report_names)
            if on_result is not None:
                on_result(result, out)
    if not slides:
        write_summary_csv([], run_dir / "summary.csv")
    return RunSummary(
        run_dir=run_dir, store_path=store_path, results=results, report_dirs=[run_dir / f for f in folders]
    )


def _model_scorer(model_dir: Path) -> SlideScorer | None:
    path = model_dir / SCORER_FILE
    if not path.is_file():
        return None
    from cytolt.aggregate import SlideScorer

    try:
        return SlideScorer.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid slide scorer ({exc})") from exc


def _report_folders(slides: Sequence[Path]) -> list[str]:
    """A folder name per slide: its stem, with ``-2``, ``-3``, ... for repeated stems."""
    out: list[str] = []
    for p in slides:
        stem = name = p.stem or p.name
        n = 1
        while name in out:
            n += 1
            name = f"{stem}-{n}"
        out.append(name)
    return out
