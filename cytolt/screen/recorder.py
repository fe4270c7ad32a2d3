"""One run's record: every slide's state in the store, its reports, and the run's summary.csv.

The recorder is the only writer of a run folder, whichever executor screened the slides (in this process or on
Dask), so both produce the same rows. States of a slide in the store::

    pending --start--> running --record--> done | failed
                          \\--interrupt--> failed, error "interrupted"

``pending`` is set before a slide joins this run (:meth:`RunRecorder.claim`), so a kill between joining and
running never leaves an old ``done`` row (another model's detections) looking finished by this run. A slide
never started stays ``pending``; ``--resume`` screens everything that is not ``done``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.screen.engine import SlideResult, error_message, failed_result, slide_fingerprint

if TYPE_CHECKING:
    from cytolt.detect import ModelInfo
    from cytolt.store import DetectionStore, RunFolder

__all__ = ["RunCallbacks", "RunRecorder", "RunSummary"]

SlideCallback = Callable[[SlideResult, Path], Any]


@dataclass(frozen=True)
class RunCallbacks:
    """What to call as slides finish, each as ``callback(result, slide_folder)``, after the reports are written.

    Attributes:
        on_result: a slide screened in this run (done or failed).
        on_resumed: a slide whose result was taken from the store (``resume``), not screened again.
    """

    on_result: SlideCallback | None = None
    on_resumed: SlideCallback | None = None


@dataclass(frozen=True)
class RunSummary:
    """What a run did: one result and one slide folder per finished slide, in input order.

    ``resumed``: the slides whose results were taken from the store, not screened again. After Ctrl-C it lists
    only the slides that finished.
    """

    run_dir: Path
    store_path: Path
    results: list[SlideResult]
    report_dirs: list[Path]
    resumed: tuple[Path, ...] = ()

    @property
    def failed(self) -> list[SlideResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


class RunRecorder:
    """Records the slides of one run (``slides[i]`` is slide ``i``) into its store and run folder.

    Args:
        store: the run's open store (``run.store_path``).
        run: the run folder.
        slides: the run's slide files, in input order.
        run_id: the store's run row (``DetectionStore.add_run``).
        model: the model's classes and colours (reports and detections).
        model_name: the model name every report carries.
        html: also write each slide's ``report.html``.
        callbacks: called as slides finish.
    """

    def __init__(
        self,
        store: DetectionStore,
        run: RunFolder,
        slides: Sequence[Path],
        *,
        run_id: int,
        model: ModelInfo,
        model_name: str,
        html: bool = True,
        callbacks: RunCallbacks | None = None,
    ) -> None:
        self.store = store
        self.run = run
        self.slides = list(slides)
        self.folders = run.slide_folders(self.slides)
        self.run_id = run_id
        self.model = model
        self.model_name = model_name
        self.html = html
        self.callbacks = callbacks or RunCallbacks()
        self._ids: dict[int, int] = {}  # slide index -> store id, for the slides started in this run
        self._results: dict[int, SlideResult] = {}
        self._reports: dict[int, dict[str, Any]] = {}
        self._resumed: set[int] = set()
        self._write_summary()  # a run stopped before its first slide still has a summary

    # ----------------------------------------------------------------- the state machine
    def claim(self, i: int) -> None:
        """Mark slide ``i`` ``pending`` before it joins this run (see the module docstring)."""
        sid = self.store.find_slide(self.slides[i])
        if sid is not None:
            self.store.set_slide_status(sid, "pending")

    def start(self, i: int) -> int:
        """Slide ``i`` is handed to the model: it joins this run with its content hash, ``running``."""
        self.claim(i)
        path = self.slides[i]
        sid = self.store.add_slide(path, content_hash=slide_fingerprint(path), run_id=self.run_id)
        self._ids[i] = sid
        self.store.set_slide_status(sid, "running", error=None)
        return sid

    def record(self, i: int, result: SlideResult) -> SlideResult:
        """Store a screened slide's detections and final state, then write its reports (:meth:`publish`).

        A result whose detections do not fit the store (labels outside the model's classes) is recorded as
        failed with the reason. Returns the result as recorded (store id, store time added to its timings).
        """
        sid = self._ids[i] if i in self._ids else self.start(i)
        t0 = time.perf_counter()
        if result.ok:
            try:
                self.store.add_slide(result.path, mpp=result.mpp, dims=result.dimensions)
                self.store.replace_detections(sid, result.detections, result.class_names)
                q = result.quality
                self.store.replace_tiles(sid, q.tiles_xywh, q.sharpness, q.cellular)
            except ValueError as exc:
                result = failed_result(result.path, error_message(exc), timings=result.timings)
        timings = dict(result.timings)
        if timings:
            spent = time.perf_counter() - t0
            timings["store"] = round(timings.get("store", 0.0) + spent, 6)
            timings["total"] = round(timings.get("total", 0.0) + spent, 6)
        self.store.set_slide_status(sid, result.status, error=result.error, timings=timings or None)
        result = replace(result, slide_id=sid, timings=timings)
        self.publish(i, result)
        return result

    def keep(self, i: int, result: SlideResult) -> None:
        """Slide ``i`` was finished by an equivalent run (``resume``): only its reports are written again."""
        self._resumed.add(i)
        self.publish(i, result, resumed=True)

    def interrupt(self) -> None:
        """Ctrl-C: every slide started and not finished becomes ``failed`` with error ``"interrupted"``."""
        for i, sid in self._ids.items():
            if i not in self._results:
                self.store.set_slide_status(sid, "failed", error="interrupted")

    # ----------------------------------------------------------------- reports
    def publish(self, i: int, result: SlideResult, *, resumed: bool = False) -> None:
        """Write slide ``i``'s report.json, the summary and report.html, then call back.

        The store already holds the slide finished, so a Ctrl-C in here still writes its report.json and
        summary row (not its page: a resume writes that) before it stops the run.
        """
        callback = self.callbacks.on_resumed if resumed else self.callbacks.on_result
        try:
            self._publish(i, result, callback, resumed=resumed, html=self.html)
        except KeyboardInterrupt:
            if i not in self._results:
                self._publish(i, result, None, resumed=resumed, html=False)
            raise

    def _publish(
        self, i: int, result: SlideResult, callback: SlideCallback | None, *, resumed: bool, html: bool
    ) -> None:
        from cytolt.report import slide_report, write_html, write_report

        # One model name in every report, whatever the detector object calls itself.
        result = replace(result, model_name=self.model_name)
        folder = self.folders[i]
        out = self.run.slide_dir(folder)
        out.mkdir(exist_ok=True)
        report = slide_report(result, class_names=self.model.classes, colors=self.model.colors)
        page = self.run.page_path(folder)
        # A resumed slide keeps its page when its old report says the same (the page costs a slide read).
        keep_page = resumed and _same_report(self.run.report_path(folder), report) and page.is_file()
        write_report(report, self.run.report_path(folder))
        self._reports[i] = report
        self._write_summary()
        self._results[i] = result
        if html and not keep_page:
            write_html(report, result.path if result.ok else None, page)
        if callback is not None:
            callback(result, out)

    def _write_summary(self) -> None:
        from cytolt.report import write_summary_csv

        order = sorted(self._reports)
        write_summary_csv(
            [self._reports[i] for i in order],
            self.run.summary_path,
            report_paths=[self.run.relative_report(self.folders[i]) for i in order],
        )

    # ----------------------------------------------------------------- outcome
    def finished(self, i: int) -> bool:
        return i in self._results

    def unfinished(self) -> list[Path]:
        return [p for i, p in enumerate(self.slides) if i not in self._results]

    def summary(self) -> RunSummary:
        order = sorted(self._results)
        return RunSummary(
            run_dir=self.run.path,
            store_path=self.run.store_path,
            results=[self._results[i] for i in order],
            report_dirs=[self.run.slide_dir(self.folders[i]) for i in order],
            resumed=tuple(self.slides[i] for i in order if i in self._resumed),
        )


def _same_report(path: Path, report: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(
        old.get(k) == report.get(k) for k in ("slide", "status", "detections", "score", "tiles", "model")
    )
