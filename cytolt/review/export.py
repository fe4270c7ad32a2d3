"""Export a run's detections, slide by slide, into each slide's folder: QuPath GeoJSON, CSV and COCO results.

What ``cytolt export RUN`` and ``cytolt screen --export`` write (docs/export.md)::

    RUN_DIR/<slide folder>/detections.geojson    QuPath FeatureCollection (cytolt.store.to_geojson)
    RUN_DIR/<slide folder>/detections.csv        one row per detection (cytolt.store.to_csv)
    RUN_DIR/<slide folder>/detections_coco.json  COCO results, image_id = the slide's store id

or the same under ``OUT/<slide folder>/``. Classes are coloured as the run's model colours them
(:func:`cytolt.review.class_colors`). The files hold boxes (level-0 px), classes, scores and review decisions,
never the slide's path, label or macro image, or description text (they can carry patient data). This module
lives in ``cytolt.review`` because it needs the review package's colours and ``cytolt.store`` must not import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cytolt.review.run import run_params
from cytolt.review.table import class_colors
from cytolt.store import DetectionStore, RunFolder
from cytolt.store.export import ExportSelection, to_coco_results, to_csv, to_geojson
from cytolt.store.run_folder import report_slide_name
from cytolt.store.store import SlideRecord

if TYPE_CHECKING:
    from cytolt.screen.engine import SlideResult
    from cytolt.screen.recorder import RunCallbacks

__all__ = [
    "FORMATS",
    "SlideExport",
    "export_callbacks",
    "export_run",
    "export_slide",
    "parse_formats",
    "run_slide_folders",
]

# format name -> the file it writes in a slide's folder
FORMATS: dict[str, str] = {
    "geojson": "detections.geojson",
    "csv": "detections.csv",
    "coco": "detections_coco.json",
}


@dataclass(frozen=True)
class SlideExport:
    """What an export did for one slide of a run.

    ``slide``: the slide's file name; ``folder``: its folder in the run; ``files``: format -> path written
    (empty when skipped); ``count``: detections written (every file holds the same ones); ``note``: why the
    slide was skipped, None when it was exported.
    """

    slide: str
    folder: str
    files: dict[str, Path] = field(default_factory=dict)
    count: int = 0
    note: str | None = None

    @property
    def skipped(self) -> bool:
        return self.note is not None


def parse_formats(values: Iterable[str]) -> tuple[str, ...]:
    """Format names from repeated and comma-separated values (``["geojson,csv", "coco"]``), deduplicated, in
    :data:`FORMATS` order; ValueError lists the choices for an unknown one."""
    asked = {v.strip().lower() for value in values for v in value.split(",") if v.strip()}
    unknown = sorted(asked - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in asked)


def run_slide_folders(run: RunFolder, records: Sequence[SlideRecord]) -> dict[int, str]:
    """Slide store id -> the slide's folder in the run.

    The folder ``cytolt screen`` names for it (:meth:`RunFolder.slide_folders` over the slides in store order)
    when its report.json names this slide or there is no report; else the folder whose report names it
    (:meth:`RunFolder.find_report`), so folders of slides screened in other runs are still found.
    """
    folders = RunFolder.slide_folders([r.path for r in records])
    out: dict[int, str] = {}
    for record, folder in zip(records, folders, strict=True):
        name = Path(record.path).name
        report = run.report_path(folder)
        if report.is_file() and report_slide_name(report) != name:
            found = run.find_report(name)
            folder = folder if found is None else found.parent.name
        out[record.id] = folder
    return out


def export_slide(
    store: DetectionStore,
    slide_id: int,
    out_dir: str | os.PathLike[str],
    *,
    formats: Sequence[str] = tuple(FORMATS),
    selection: ExportSelection | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> SlideExport:
    """Write one slide's detections into ``out_dir`` (created), one file per format (:data:`FORMATS`).

    Colours are the model's: from ``report_path`` (the slide's report.json) when it lists the store's classes,
    else the colours the run recorded, else Tableau 10 (:func:`cytolt.review.class_colors`).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    record = store.slide(slide_id)
    names = store.class_names
    if selection is not None:
        selection.check_classes(names, store.path)  # before a folder is made
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = class_colors(names, report_path=report_path, run_params=run_params(store, slide_id))
    files: dict[str, Path] = {}
    count = 0
    for fmt in formats:
        path = files[fmt] = out / FORMATS[fmt]
        if fmt == "geojson":
            doc = to_geojson(
                store, slide_id, path, class_colors=dict(zip(names, colors, strict=True)), selection=selection
            )
            count = len(doc["features"])
        elif fmt == "csv":
            count = to_csv(store, slide_id, path, selection=selection)
        else:
            count = len(to_coco_results(store, slide_id, path, selection=selection))
    return SlideExport(slide=Path(record.path).name, folder=out.name, files=files, count=count)


def export_run(
    run_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    formats: Sequence[str] = tuple(FORMATS),
    selection: ExportSelection | None = None,
    slides: Sequence[int | str] | None = None,
    progress: bool = True,
) -> list[SlideExport]:
    """Export every screened slide of a run (:func:`export_slide`) into its folder, or ``out/<slide folder>/``.

    ``slides`` limits the export to these slides (store ids or file names). Slides not screened to the end
    (status failed, pending, running) are skipped, each with a note. Returns one :class:`SlideExport` per
    slide, in store order. Raises ValueError naming ``run_dir`` when it is no run folder, or naming a slide
    that is not in the run.
    """
    run = RunFolder(run_dir)
    if Path(run_dir).name == RunFolder.STORE and Path(run_dir).is_file():
        run = RunFolder(Path(run_dir).parent)
    if not run.exists():
        raise ValueError(f"{run_dir}: not a cytolt run folder (no {RunFolder.STORE} in it)")
    from tqdm import tqdm

    with DetectionStore(run.store_path, readonly=True) as store:
        records = store.slides()
        folders = run_slide_folders(run, records)
        if slides is not None:
            records = _pick(records, slides, run)
        results = []
        for record in tqdm(records, desc="export", unit="slide", disable=not progress):
            folder = folders[record.id]
            if record.status != "done":
                note = f"skipped: status {record.status} (only slides screened to the end are exported)"
                results.append(SlideExport(slide=Path(record.path).name, folder=folder, note=note))
                continue
            target = run.slide_dir(folder) if out is None else Path(out) / folder
            results.append(
                export_slide(
                    store,
                    record.id,
                    target,
                    formats=formats,
                    selection=selection,
                    report_path=run.report_path(folder),
                )
            )
    return results


def _pick(records: list[SlideRecord], wanted: Sequence[int | str], run: RunFolder) -> list[SlideRecord]:
    by_id = {r.id: r for r in records}
    by_name = {Path(r.path).name: r for r in records}
    chosen: dict[int, SlideRecord] = {}
    for w in wanted:
        record = by_id.get(w) if isinstance(w, int) else by_name.get(str(w))
        if record is None:
            raise ValueError(f"{run.store_path}: no slide {w!r} in this run; slides are {sorted(by_name)}")
        chosen[record.id] = record
    return [chosen[i] for i in sorted(chosen)]


def export_callbacks(
    callbacks: RunCallbacks,
    run_dir: str | os.PathLike[str],
    *,
    formats: Sequence[str],
    selection: ExportSelection | None = None,
) -> RunCallbacks:
    """``callbacks`` with an export (:func:`export_slide`) of each finished slide into its folder first.

    For ``cytolt screen --export``: slides screened in this run and slides kept from before (``--resume``)
    alike; failed slides are not exported. The store is read through its own read-only connection, which WAL
    lets run beside the run's writer.
    """
    store_path = RunFolder(run_dir).store_path

    def export(result: SlideResult, folder: Path) -> None:
        if not result.ok:
            return
        with DetectionStore(store_path, readonly=True) as store:
            sid = result.slide_id if result.slide_id is not None else store.find_slide(result.path)
            if sid is None:
                raise ValueError(f"{store_path}: slide {result.path.name} is not in the run's store")
            export_slide(
                store,
                sid,
                folder,
                formats=formats,
                selection=selection,
                report_path=folder / RunFolder.REPORT,
            )

    def then(after: Callable[[SlideResult, Path], object] | None) -> Callable[[SlideResult, Path], None]:
        def call(result: SlideResult, folder: Path) -> None:
            export(result, folder)
            if after is not None:
                after(result, folder)

        return call

    return replace(callbacks, on_result=then(callbacks.on_result), on_resumed=then(callbacks.on_resumed))
