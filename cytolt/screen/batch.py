"""Screen many slides into one run folder: the library side of ``cytolt screen``.

Run folder layout::

    RUN_DIR/run.sqlite              DetectionStore: every slide, its status and error, detections, reviews
    RUN_DIR/<slide stem>/report.json   slide report (cytolt/report/schema/report.schema.json)
    RUN_DIR/<slide stem>/report.html   self-contained page: thumbnail, gallery, histogram
    RUN_DIR/summary.csv             one row per slide (rewritten after each slide, so a stopped run has one)

Failure isolation: a slide that cannot be read (:class:`~cytolt.io.SlideError`), runs past its ``timeout``, or
raises anything else while it is screened is recorded as failed (status and message in the store, the report
and the summary) and the run goes on. What stops a run: a model that does not load, a run folder that cannot be
written, Ctrl-C (:class:`ScreeningInterrupted`, finished slides kept).

Resume (``resume=True``): a slide is skipped when its store row says ``done``, its content hash
(:func:`~cytolt.screen.engine.slide_fingerprint`) is unchanged and the run that screened it used the same
*result key*: the model identity (:func:`~cytolt.screen.inputs.model_identity`) and the parameters that change
detections (``RESULT_PARAMS``). Its result is rebuilt from the store (detections, timings; counts and score
recomputed, the tile grid measured again). Every other slide (pending, running, failed, changed) is screened
again; ``replace_detections`` replaces its detections in one transaction, so nothing is ever duplicated.

Distributed (``dask_workers`` or ``scheduler``): one Dask task per slide (:mod:`cytolt.screen.distributed`);
this process alone writes the store and the reports, as results come back.

Two slides with the same stem get folders ``<stem>`` and ``<stem>-2``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.io import SlideError, open_slide
from cytolt.screen.engine import (
    SlideResult,
    check_params,
    class_counts,
    default_overlap,
    default_scorer,
    detector_name,
    error_message,
    failed_result,
    screen_slide,
    slide_fingerprint,
    tile_grid,
)

if TYPE_CHECKING:
    import torch

    from cytolt.aggregate import SlideScorer
    from cytolt.detect import Detector, ModelInfo
    from cytolt.screen.distributed import DetectorFactory
    from cytolt.store import DetectionStore, SlideRecord

__all__ = ["RESULT_PARAMS", "SCORER_FILE", "RunSummary", "ScreeningInterrupted", "screen_slides"]

# A model folder may hold the slide scorer fit for it (SlideScorer.to_dict() as JSON, docs/aggregate.md).
SCORER_FILE = "scorer.json"
# Run parameters that change a slide's detections; with the model identity they decide what --resume skips.
# batch_size, read threads and device do not (same model, same tiles), the scorer is re-applied on resume.
RESULT_PARAMS = ("tile_size", "overlap", "merge", "mpp")


@dataclass(frozen=True)
class RunSummary:
    """What :func:`screen_slides` did: one result and one report folder per slide, in input order.

    ``resumed``: the slides whose results were taken from the store (``resume=True``), not screened again.
    After Ctrl-C (:class:`ScreeningInterrupted`) it lists only the slides that finished.
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


class ScreeningInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`screen_slides`. Finished slides are kept (store, reports, summary.csv).

    The slides not finished are in the store as ``failed`` with error ``"interrupted"`` (or ``pending`` if never
    started), so ``resume=True`` screens them. A KeyboardInterrupt, so callers that ignore it still stop.

    Attributes:
        summary: the slides that finished, as a :class:`RunSummary`.
        unfinished: the slides that did not.
    """

    def __init__(self, summary: RunSummary, unfinished: Sequence[Path]) -> None:
        super().__init__(f"interrupted: {len(summary.results)} slides finished, {len(unfinished)} not")
        self.summary = summary
        self.unfinished = list(unfinished)


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
    resume: bool = False,
    timeout: float | None = None,
    dask_workers: int | None = None,
    scheduler: str | None = None,
    memory_limit: str | float | None = "auto",
    detector_factory: DetectorFactory | None = None,
    progress: Callable[[Path, int, int], Any] | None = None,
    on_result: Callable[[SlideResult, Path], Any] | None = None,
    on_resumed: Callable[[SlideResult, Path], Any] | None = None,
) -> RunSummary:
    """Screen ``paths`` with one model and write the run folder (see the module docstring).

    Args:
        paths: slide files (:func:`~cytolt.screen.inputs.collect_slides` expands folders, globs and lists);
            repeats are screened once.
        model: a model folder (``cytolt export-model``), loaded with :func:`cytolt.detect.load`, or a detector
            (in this process only; its identity for ``resume`` is weaker, see ``model_identity``).
        run_dir: the run folder, created if missing; an existing ``run.sqlite`` is added to (reviews kept).
        device: torch device for the model (default: CUDA when available; on Dask, one GPU per worker).
        batch_size, tile_size, overlap, workers, merge: as for :func:`~cytolt.screen.screen_slide`
            (``workers``: tile reading threads per slide).
        scorer: slide scoring; default ``<model folder>/scorer.json`` if there, else
            :func:`~cytolt.screen.engine.default_scorer`.
        html: also write ``report.html`` per slide.
        resume: skip the slides this run folder already holds finished with the same model and parameters.
        timeout: seconds per slide (see :func:`~cytolt.screen.screen_slide`); a slide past it fails.
        dask_workers: screen on a new Dask LocalCluster of this many worker processes.
        scheduler: screen on the running Dask cluster at this address (``tcp://host:port``).
        memory_limit: per LocalCluster worker, e.g. ``"4GiB"``; ``"auto"`` shares the machine's memory.
        detector_factory: with a model folder, makes the detector instead of :func:`cytolt.detect.load`:
            ``factory(device) -> Detector``, picklable for Dask (the folder still gives identity and classes).
        progress: called as ``progress(slide_path, tiles_done, tiles_total)`` while a slide is read (not on Dask).
        on_result: called as ``on_result(result, report_dir)`` once a screened slide's reports are written.
        on_resumed: the same for a slide taken from the store (``resume``).

    Raises:
        ScreeningInterrupted: Ctrl-C; what finished is kept.
        ValueError: a bad argument.
    """
    from cytolt.detect import read_model_info
    from cytolt.screen.inputs import model_identity
    from cytolt.store import DetectionStore

    check_params(
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        workers=workers,
        merge=merge,
        timeout=timeout,
    )
    if dask_workers is not None and scheduler is not None:
        raise ValueError("give dask_workers (a local cluster) or scheduler (an existing one), not both")
    on_dask = dask_workers is not None or scheduler is not None
    if isinstance(model, str | os.PathLike):
        from cytolt.screen.distributed import load_model

        model_dir: Path | None = Path(model)
        info = read_model_info(model)
        factory = detector_factory or functools.partial(load_model, str(model))
        model_name = Path(info.path).name
    elif detector_factory is not None or on_dask:
        raise ValueError(
            "a detector object runs in this process only: give a model folder (and detector_factory)"
        )
    else:
        model_dir, info, factory, model_name = None, model.info, None, detector_name(model)
    if scorer is None:
        scorer = (_model_scorer(model_dir) if model_dir is not None else None) or default_scorer(info)
    detector = None
    if not on_dask:
        detector = model if factory is None else factory(None if device is None else str(device))
    identity = model_identity(model if model_dir is None else model_dir)
    overlap = overlap if overlap is not None else min(default_overlap(info.mpp), tile_size // 2)
    options = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, workers=workers, mpp=info.mpp)
    options.update(merge=merge, scorer=scorer, timeout=timeout)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    slides = list(dict.fromkeys(Path(p).absolute() for p in paths))
    writer = _RunWriter(run_dir, slides, info, model_name=model_name, html=html)
    params = {
        "tile_size": tile_size,
        "overlap": overlap,
        "batch_size": batch_size,
        "workers": workers,
        "merge": merge,
        "mpp": info.mpp,
        "device": str(detector.device) if detector is not None else (None if device is None else str(device)),
        "scorer": None if scorer is None else scorer.to_dict(),
        "timeout": timeout,
        "dask": None if not on_dask else (scheduler or f"LocalCluster({dask_workers})"),
    }
    with DetectionStore(writer.store_path) as store:
        run_id = store.add_run(model=str(info.path), model_hash=identity, params=params)
        try:
            todo = list(range(len(slides)))
            if resume:
                key = _result_key(identity, params)
                runs = {r["id"]: _result_key(r["model_hash"], r["params"]) for r in store.runs()}
                todo = []
                for i, path in enumerate(slides):
                    kept = _stored_result(store, path, runs, key, info, scorer, options)
                    if kept is None:
                        todo.append(i)
                    else:
                        writer.finish(i, kept, on_resumed, resumed=True)
            if on_dask:
                assert factory is not None
                _screen_on_dask(
                    store,
                    run_id,
                    writer,
                    todo,
                    factory,
                    identity,
                    options,
                    on_result,
                    dask_workers=dask_workers,
                    scheduler=scheduler,
                    memory_limit=memory_limit,
                    device=device,
                )
            else:
                assert detector is not None
                _screen_here(store, run_id, writer, todo, detector, options, progress, on_result)
        except KeyboardInterrupt:
            raise ScreeningInterrupted(writer.summary(), writer.unfinished()) from None
    return writer.summary()


def _screen_here(
    store: DetectionStore,
    run_id: int,
    writer: _RunWriter,
    todo: list[int],
    detector: Detector,
    options: dict[str, Any],
    progress: Callable[[Path, int, int], Any] | None,
    on_result: Callable[[SlideResult, Path], Any] | None,
) -> None:
    """Screen ``slides[i] for i in todo`` one after another in this process (``screen_slide`` stores each)."""
    for i in todo:
        path = writer.slides[i]
        tick = None if progress is None else functools.partial(progress, path)
        _claim(store, path)
        try:
            result = screen_slide(path, detector, store=store, run_id=run_id, progress=tick, **options)
        except Exception as exc:  # SlideError, a timeout or a crash in this slide: recorded, the run goes on
            sid = store.find_slide(path)
            timings = None if sid is None else store.slide(sid).timings  # what screen_slide recorded
            result = failed_result(path, error_message(exc), detector=detector, slide_id=sid, timings=timings)
        writer.finish(i, result, on_result)


def _screen_on_dask(
    store: DetectionStore,
    run_id: int,
    writer: _RunWriter,
    todo: list[int],
    factory: DetectorFactory,
    identity: str,
    options: dict[str, Any],
    on_result: Callable[[SlideResult, Path], Any] | None,
    *,
    dask_workers: int | None,
    scheduler: str | None,
    memory_limit: str | float | None,
    device: str | torch.device | None,
) -> None:
    """Screen ``slides[i] for i in todo`` on Dask; the results are stored and reported here as they arrive."""
    from cytolt.screen.distributed import dask_client, screen_on_cluster

    if not todo:  # everything kept by resume: no cluster to start
        return
    slides = [writer.slides[i] for i in todo]
    ids = []
    for path in slides:
        _claim(store, path)
        ids.append(store.add_slide(path, content_hash=slide_fingerprint(path), run_id=run_id))
        store.set_slide_status(ids[-1], "running")  # on Dask: handed to the cluster
    try:
        with dask_client(n_workers=dask_workers, scheduler=scheduler, memory_limit=memory_limit) as (
            client,
            threads,
        ):
            for j, result in screen_on_cluster(
                client,
                slides,
                factory,
                model_key=identity,
                device=None if device is None else str(device),
                threads=threads,
                options=options,
            ):
                writer.finish(todo[j], _record(store, ids[j], result), on_result)
    except KeyboardInterrupt:
        for j, sid in enumerate(ids):
            if not writer.done(todo[j]):
                store.set_slide_status(sid, "failed", error="interrupted")
        raise


def _record(store: DetectionStore, slide_id: int, result: SlideResult) -> SlideResult:
    """Write a worker's result into the store (what ``screen_slide`` does with a store in-process)."""
    t0 = time.perf_counter()
    if result.ok:
        try:
            store.add_slide(result.path, mpp=result.mpp, dims=result.dimensions)
            store.replace_detections(slide_id, result.detections, result.class_names)
        except ValueError as exc:  # detections that do not fit the store (other classes): this slide fails
            result = failed_result(result.path, error_message(exc), timings=result.timings)
    timings = dict(result.timings)
    if timings:
        spent = time.perf_counter() - t0
        timings["store"] = round(timings.get("store", 0.0) + spent, 6)
        timings["total"] = round(timings.get("total", 0.0) + spent, 6)
    store.set_slide_status(slide_id, result.status, error=result.error, timings=timings or None)
    return replace(result, slide_id=slide_id, timings=timings)


def _claim(store: DetectionStore, path: Path) -> None:
    """Mark a slide about to be screened ``pending`` before it joins this run.

    Otherwise a kill between ``add_slide(run_id=...)`` and the status change would leave an old ``done`` row
    (detections of another model) looking finished by this run, and a resume would keep it.
    """
    sid = store.find_slide(path)
    if sid is not None:
        store.set_slide_status(sid, "pending")


def _result_key(model_hash: str | None, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """What must match for a stored result to stand for this run's (None: never, e.g. an older store)."""
    if model_hash is None:
        return None
    return (model_hash, *(params.get(k) for k in RESULT_PARAMS))


def _stored_result(
    store: DetectionStore,
    path: Path,
    runs: dict[int, tuple[Any, ...] | None],
    key: tuple[Any, ...] | None,
    info: ModelInfo,
    scorer: SlideScorer | None,
    options: dict[str, Any],
) -> SlideResult | None:
    """The result of a slide the store holds finished by an equivalent run, rebuilt; None to screen it again."""
    sid = store.find_slide(path)
    if sid is None or key is None:
        return None
    record: SlideRecord = store.slide(sid)
    if record.status != "done" or record.run_id is None or runs.get(record.run_id) != key:
        return None
    if record.content_hash is None or record.content_hash != slide_fingerprint(path):
        return None
    try:  # the grid gives the tile counts of the report; a slide that no longer opens is screened (and fails)
        with open_slide(path) as handle:
            grid = tile_grid(handle, tile_size=options["tile_size"], overlap=options["overlap"], mpp=info.mpp)
            vendor, dims, mpp = handle.vendor, handle.dimensions, handle.mpp
    except SlideError:
        return None
    dets, _ = store.query(sid)  # score order, ties in insertion order: the order screen_slide returned
    return SlideResult(
        path=path,
        status="done",
        dimensions=dims,
        mpp=mpp,
        read_mpp=grid.mpp,
        tile_size=options["tile_size"],
        overlap=options["overlap"],
        tiles_read=len(grid),
        tiles_total=grid.total,
        detections=dets,
        class_names=tuple(info.classes),
        counts=class_counts(dets, info.classes),
        score=None if scorer is None else scorer.score(dets),
        timings=record.timings,
        slide_id=sid,
        vendor=vendor,
    )


class _RunWriter:
    """Reports, summary.csv and callbacks of one run, as slides finish in any order."""

    def __init__(
        self, run_dir: Path, slides: list[Path], info: ModelInfo, *, model_name: str, html: bool
    ) -> None:
        self.run_dir = run_dir
        self.store_path = run_dir / "run.sqlite"
        self.slides = slides
        self.folders = _report_folders(slides)
        self.info = info
        self.model_name = model_name
        self.html = html
        self.results: dict[int, SlideResult] = {}
        self.reports: dict[int, dict[str, Any]] = {}
        self.resumed: list[Path] = []
        self._write_summary()  # a run stopped before its first slide still has a summary

    def done(self, i: int) -> bool:
        return i in self.results

    def finish(
        self,
        i: int,
        result: SlideResult,
        callback: Callable[[SlideResult, Path], Any] | None,
        *,
        resumed: bool = False,
    ) -> None:
        """Write slide ``i``'s report.json, the summary and report.html, then call ``callback(result, report_dir)``.

        The store already holds the slide finished, so a Ctrl-C in here still writes its report.json and summary
        row (no page: a resume writes it) before it stops the run.
        """
        try:
            self._finish(i, result, callback, resumed=resumed, html=self.html)
        except KeyboardInterrupt:
            if i not in self.results:
                self._finish(i, result, None, resumed=resumed, html=False)
            raise

    def _finish(
        self,
        i: int,
        result: SlideResult,
        callback: Callable[[SlideResult, Path], Any] | None,
        *,
        resumed: bool,
        html: bool,
    ) -> None:
        from cytolt.report import slide_report, write_html, write_report

        # One model name in every report, whatever the detector object calls itself.
        result = replace(result, model_name=self.model_name)
        out = self.run_dir / self.folders[i]
        out.mkdir(exist_ok=True)
        report = slide_report(result, class_names=self.info.classes, colors=self.info.colors)
        # A resumed slide keeps its page when its old report says the same (the page costs a slide read).
        keep_page = resumed and _same_report(out / "report.json", report) and (out / "report.html").is_file()
        write_report(report, out / "report.json")
        self.reports[i] = report
        self._write_summary()
        self.results[i] = result
        if resumed:
            self.resumed.append(result.path)
        if html and not keep_page:
            write_html(report, result.path if result.ok else None, out / "report.html")
        if callback is not None:
            callback(result, out)

    def unfinished(self) -> list[Path]:
        return [p for i, p in enumerate(self.slides) if i not in self.results]

    def summary(self) -> RunSummary:
        order, resumed = sorted(self.results), set(self.resumed)
        return RunSummary(
            run_dir=self.run_dir,
            store_path=self.store_path,
            results=[self.results[i] for i in order],
            report_dirs=[self.run_dir / self.folders[i] for i in order],
            resumed=tuple(p for p in self.slides if p in resumed),
        )

    def _write_summary(self) -> None:
        from cytolt.report import write_summary_csv

        order = sorted(self.reports)
        write_summary_csv(
            [self.reports[i] for i in order],
            self.run_dir / "summary.csv",
            report_paths=[f"{self.folders[i]}/report.json" for i in order],
        )


def _same_report(path: Path, report: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(
        old.get(k) == report.get(k) for k in ("slide", "status", "detections", "score", "tiles", "model")
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
