"""Screen many slides into one run folder: the library side of ``cytolt screen``.

    summary = screen_slides(paths, "models/r18", "runs/night", ScreenSettings(tile_size=512))

One slide's path through a run, by the types that carry it:

    path --collect_slides--> Path --ModelFolder + ScreenSettings.for_model--> SlideJob
         --Executor.run (LocalExecutor, DaskExecutor)--> SlideStarted, SlideFinished(SlideResult)
         --RunRecorder.start / record--> run.sqlite rows, <slide>/report.json + report.html, summary.csv

Failure isolation: a slide that cannot be read (:class:`~cytolt.io.SlideError`), runs past its timeout, or
raises anything else while it is screened is recorded as failed (status and message in the store, the report
and the summary) and the run goes on. What stops a run: a model that does not load, a run folder that cannot be
written, Ctrl-C (:class:`ScreeningInterrupted`, finished slides kept).

Resume (``resume=True``): a slide is skipped when its store row says ``done``, its content hash
(:func:`~cytolt.screen.engine.slide_fingerprint`) is unchanged and the run that screened it had the same
*result key*: the model identity (:meth:`ModelFolder.identity`) and the settings' identity
(:meth:`ScreenSettings.identity`). Its result is rebuilt from the store (detections, timings; counts and score
recomputed, the tile grid measured again). Every other slide (pending, running, failed, changed) is screened
again; ``replace_detections`` replaces its detections in one transaction, so nothing is ever duplicated.

Second stage (``ScreenSettings.classifier``): the classifier's identity, top n and combination are part of the
settings' identity, so another classifier screens every slide again. The store holds the re-scored cells; the
detector's own probabilities of the re-scored cells live in the slide's report.json (``second_stage.cells``),
from which a kept slide's :class:`~cytolt.screen.second_stage.Rescored` is rebuilt (a slide whose report lacks
them is screened again). In this process the classifier is loaded before the first slide, so one that does
not load stops the run at once; Dask workers load it from the folder (it must be visible to them, as the
model folder is).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytolt.adequacy import SlideQuality
from cytolt.detect.model_folder import ModelFolder
from cytolt.io import SlideError, open_slide
from cytolt.screen.engine import (
    SlideResult,
    default_scorer,
    detections_per_class,
    detector_name,
    slide_fingerprint,
    tile_grid,
)
from cytolt.screen.executors import Executor, GivenDetector, LocalExecutor, SlideJob, SlideStarted, load_model
from cytolt.screen.recorder import RunCallbacks, RunRecorder, RunSummary
from cytolt.screen.second_stage import Rescored, load_second_stage
from cytolt.screen.settings import ScreenSettings
from cytolt.store.run_folder import RunFolder
from cytolt.store.store import detection_keys

if TYPE_CHECKING:
    from cytolt.aggregate import SlideScorer
    from cytolt.detect import Detections, Detector, ModelInfo
    from cytolt.store import DetectionStore

__all__ = ["RunSummary", "ScreeningInterrupted", "screen_slides"]


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
    model: ModelFolder | Detector | str | os.PathLike[str],
    run_dir: str | os.PathLike[str] | RunFolder,
    settings: ScreenSettings | None = None,
    *,
    scorer: SlideScorer | None = None,
    executor: Executor | None = None,
    resume: bool = False,
    callbacks: RunCallbacks | None = None,
) -> RunSummary:
    """Screen ``paths`` with one model and write the run folder (see the module docstring).

    Args:
        paths: slide files (:func:`~cytolt.screen.inputs.collect_slides` expands folders, globs and lists);
            repeats are screened once.
        model: a model folder (``cytolt export-model``), or a detector object (in this process only; its
            identity for ``resume`` is weaker: its class and ``info.path``).
        run_dir: the run folder, created if missing; an existing ``run.sqlite`` is added to (reviews kept).
        settings: how to screen (default ``ScreenSettings()``); ``settings.classifier`` adds the second stage
            (checked against the model's classes, and loaded when in this process, before any slide).
        scorer: slide scoring; default the model folder's ``scorer.json`` if there, else
            :func:`~cytolt.screen.engine.default_scorer`.
        executor: where slides are screened (default :class:`LocalExecutor`, this process);
            :class:`~cytolt.screen.distributed.DaskExecutor` for a Dask cluster.
        resume: skip the slides this run folder already holds finished with the same model and settings.
        callbacks: called as each slide's reports are written.

    Raises:
        ScreeningInterrupted: Ctrl-C; what finished is kept.
        ValueError: a detector object with an executor that is not in-process; a classifier whose classes
            are not the model's (:class:`~cytolt.screen.settings.InvalidSetting`).
    """
    from cytolt.store import DetectionStore

    settings = settings or ScreenSettings()
    executor = executor or LocalExecutor()
    if isinstance(model, str | os.PathLike):
        model = ModelFolder.read(model)
    if isinstance(model, ModelFolder):
        info, identity, model_name = model.info, model.identity(), model.name
        factory = executor.factory or functools.partial(load_model, model)
        scorer = scorer or model.scorer() or default_scorer(info)
    elif executor.factory is not None or not executor.in_process:
        raise ValueError("a detector object runs in this process only: give a model folder (and a factory)")
    else:
        info, model_name = model.info, detector_name(model)
        identity, factory = f"detector:{type(model).__name__}:{info.path}", GivenDetector(model)
        scorer = scorer or default_scorer(info)
    settings = settings.for_model(info)
    if executor.in_process:
        load_second_stage(settings)  # a classifier that does not load stops the run before its first slide
    if scorer is not None and settings.min_squamous_cells is not None:
        scorer = copy.copy(scorer)  # the caller's scorer (or the model's) is left as it was
        scorer.adequacy = dataclasses.replace(scorer.adequacy, min_squamous_cells=settings.min_squamous_cells)
    job = SlideJob(factory=factory, model_key=identity, settings=settings, scorer=scorer)

    run = (run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)).create()
    slides = list(dict.fromkeys(Path(p).absolute() for p in paths))
    params = {
        "settings": settings.to_dict(),
        "identity": settings.identity(),
        "scorer": None if scorer is None else scorer.to_dict(),
        "executor": executor.describe(),
        # for viewers of the run before a slide's report exists (cytolt.review.class_colors); not compared
        "colors": None
        if info.colors is None
        else dict(zip(info.classes, map(list, info.colors), strict=True)),
    }
    with DetectionStore(run.store_path) as store:
        run_id = store.add_run(model=str(info.path), model_hash=identity, params=params)
        recorder = RunRecorder(
            store,
            run,
            slides,
            run_id=run_id,
            model=info,
            model_name=model_name,
            html=settings.html,
            callbacks=callbacks,
        )
        try:
            todo = list(range(len(slides)))
            if resume:
                todo = _resume(store, recorder, identity, settings, scorer)
            for i in todo:
                recorder.claim(i)
            for event in executor.run([slides[i] for i in todo], job):
                i = todo[event.index]
                if isinstance(event, SlideStarted):
                    recorder.start(i)
                else:
                    recorder.record(i, event.result)
        except KeyboardInterrupt:
            recorder.interrupt()
            raise ScreeningInterrupted(recorder.summary(), recorder.unfinished()) from None
    return recorder.summary()


def _resume(
    store: DetectionStore,
    recorder: RunRecorder,
    identity: str,
    settings: ScreenSettings,
    scorer: SlideScorer | None,
) -> list[int]:
    """Keep the slides an equivalent run finished (their reports written again); the indices left to screen."""
    key = _result_key(identity, {"identity": settings.identity()})
    runs = {r["id"]: _result_key(r["model_hash"], r["params"]) for r in store.runs()}
    todo = []
    for i, path in enumerate(recorder.slides):
        report = recorder.run.report_path(recorder.folders[i])
        kept = _stored_result(store, path, runs, key, recorder.model, settings, scorer, report)
        if kept is None:
            todo.append(i)
        else:
            recorder.keep(i, kept)
    return todo


def _result_key(model_hash: str | None, params: Any) -> tuple[Any, ...] | None:
    """What must match for a stored result to stand for this run's (None: never, e.g. an older store)."""
    if model_hash is None or not isinstance(params, dict) or not isinstance(params.get("identity"), dict):
        return None
    return (model_hash, *sorted(params["identity"].items()))


def _stored_result(
    store: DetectionStore,
    path: Path,
    runs: dict[int, tuple[Any, ...] | None],
    key: tuple[Any, ...] | None,
    info: ModelInfo,
    settings: ScreenSettings,
    scorer: SlideScorer | None,
    report: Path,
) -> SlideResult | None:
    """The result of a slide the store holds finished by an equivalent run, rebuilt; None to screen it again.

    ``report``: the slide's report.json, where a second stage's per-cell scores are read back from.
    """
    sid = store.find_slide(path)
    if sid is None or key is None:
        return None
    record = store.slide(sid)
    if record.status != "done" or record.run_id is None or runs.get(record.run_id) != key:
        return None
    if record.content_hash is None or record.content_hash != slide_fingerprint(path):
        return None
    assert settings.overlap is not None  # resolved by for_model
    try:  # the grid gives the tile counts of the report; a slide that no longer opens is screened (and fails)
        with open_slide(path, mpp=settings.slide_mpp) as handle:
            grid = tile_grid(
                handle, tile_size=settings.tile_size, overlap=settings.overlap, mpp=settings.read_mpp
            )
            vendor, backend, dims, mpp = handle.vendor, handle.backend, handle.dimensions, handle.mpp
    except SlideError:
        return None
    dets, _ = store.query(sid)  # score order, ties in insertion order: the order screen_slide returned
    rescored = None
    if settings.classifier is not None:
        rescored = _stored_rescored(report, dets)
        if rescored is None:
            return None
    quality = SlideQuality(*store.tiles(sid))
    return SlideResult(
        path=path,
        status="done",
        dimensions=dims,
        mpp=mpp,
        mpp_source="file" if settings.slide_mpp is None else "given",
        read_mpp=grid.mpp,
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        tiles_read=len(grid),
        tiles_total=grid.total,
        detections=dets,
        class_names=tuple(info.classes),
        counts=detections_per_class(dets, info.classes),
        score=None
        if scorer is None
        else scorer.score(
            dets, quality, adequacy_dets=None if rescored is None else rescored.detector_cells(dets)
        ),
        quality=quality,
        timings=record.timings,
        slide_id=sid,
        vendor=vendor,
        backend=backend,
        second_stage=rescored,
    )


def _stored_rescored(report: Path, dets: Detections) -> Rescored | None:
    """The second stage's record of a kept slide from its report.json; None when it cannot be read back."""
    try:
        block = json.loads(report.read_text()).get("second_stage")
    except (OSError, ValueError):
        return None
    if not isinstance(block, dict):
        return None
    arr = dets.numpy()
    keys = detection_keys(arr["boxes"], arr["labels"]) if len(dets) else []
    try:
        return Rescored.from_dict(block, keys)
    except ValueError:
        return None
