"""``cytolt screen``: screen whole slides with an exported model (library: :func:`cytolt.screen.screen_slides`).

Exit codes (``EXIT_*``): 0 every slide screened; 3 some slides failed (each recorded in run.sqlite, its report
and summary.csv, and named on stderr); 2 a usage error (bad option, not a model folder, a classifier folder that
does not load or whose classes are not the model's, an input that names no slide); 130 interrupted by Ctrl-C (finished slides kept; rerun with --resume); 1 anything else.
"""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from cytolt.detect import ModelFolder
    from cytolt.screen import RunCallbacks, RunSummary, ScreenSettings, SlideResult
    from cytolt.screen.executors import Executor

# Kept here (not imported from cytolt.screen) so that `cytolt screen --help` imports nothing heavy.
MERGE_CHOICES = ("nms", "wbf")
COMBINE_CHOICES = ("replace", "mean")  # cytolt.screen.settings.COMBINE_METHODS
DEFAULT_TOP_N = 200  # cytolt.screen.settings.DEFAULT_TOP_N
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C'd command

_HELP = """Screen slides for abnormal cells and write a report per slide into the run folder.

\b
INPUT is a slide file, a folder (the slide files directly inside it), a glob
pattern in quotes ('scans/*.svs') or a .csv list (column "path", else the
first column; relative paths are relative to the list). Each slide is
screened once, in the order given.

\b
Exit codes:
  0    every slide was screened
  3    some slides failed (unreadable, truncated, unsupported, timed out,
       crashed); each is in summary.csv and run.sqlite with its error
  2    usage error (bad option, --model not a model folder, --classifier
       not a classifier folder or with other classes than the model, an
       input that names no slide)
  130  interrupted (Ctrl-C): finished slides are kept; rerun with --resume
  1    anything else

\b
--resume skips the slides RUN_DIR already holds finished with the same
model (a hash of its files), slide file (a hash of its content) and
--tile-size/--overlap/--merge (and --classifier's identity and options);
interrupted and failed slides are screened again and detections are
never duplicated.

\b
Every slide gets an adequacy result before its call: a slide with no
cellular area, too few well-visualised squamous cells (--min-squamous),
mostly out of focus or with unreadable tiles is "Unsatisfactory" (with the
reasons), never NILM, and its abnormal cells are still listed. Such a slide
counts as done (exit 0), not failed.

\b
--classifier MODEL adds a second stage: a cell classifier (a folder from
`cytolt classify train`, with the model's class table) re-scores the
--classifier-top-n most suspicious cells of each slide on crops read at
its own resolution, before the slide call; report.json and report.html
show both scores. It costs one crop read and one classifier pass per
re-scored cell (about 5 ms a cell on one CPU thread for a width-16
classifier on 64-px crops, docs/screening.md): report.json's
timings["classify"] gives the seconds.

\b
--workers N screens on a Dask LocalCluster of N processes (one GPU each
when there are GPUs); --scheduler tcp://host:port uses a running Dask
cluster (e.g. dask-jobqueue on SLURM, see docs/screening.md). Each slide is
one task; only this process writes RUN_DIR.
"""


@click.command("screen", help=_HELP)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "-o",
    "--out",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: run.sqlite, <slide>/report.json + report.html, summary.csv.",
)
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model folder written by `cytolt export-model`.",
)
@click.option(
    "--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu [default: cuda if available]."
)
@click.option(
    "--engine",
    type=click.Choice(("auto", "onnx", "torch")),
    default="auto",
    show_default=True,
    help="What runs the network: onnx (ONNX Runtime, CPU, the folder's model.onnx) or torch; auto takes the "
    "one `cytolt export-model` measured faster for this model on the CPU, and torch on a GPU. Both decode "
    "and merge boxes alike.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Tiles per model call."
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=64),
    default=512,
    show_default=True,
    help="Tile side in model pixels.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Tile overlap in model pixels [default: 64 um at the model's mpp, at most half a tile].",
)
@click.option(
    "--merge",
    type=click.Choice(MERGE_CHOICES),
    default="nms",
    show_default=True,
    help="Cross-tile merging: class-aware NMS or weighted box fusion.",
)
@click.option(
    "--read-threads",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Threads reading tiles ahead of the model, per slide (0: read in the main thread).",
)
@click.option("--resume", is_flag=True, help="Skip slides RUN_DIR already holds finished (see above).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds a slide may take; a slide past it fails and the run goes on [default: no limit].",
)
@click.option(
    "--workers",
    "dask_workers",
    type=click.IntRange(min=1),
    default=None,
    help="Screen on a local Dask cluster of this many worker processes [default: in this process].",
)
@click.option(
    "--scheduler", default=None, help="Screen on a running Dask cluster: its address, tcp://host:port."
)
@click.option(
    "--memory-limit",
    default="auto",
    show_default=True,
    help="Memory per --workers process, e.g. 4GiB; a worker past it is restarted and its slide fails.",
)
@click.option(
    "--min-squamous",
    "min_squamous_cells",
    type=click.IntRange(min=0),
    default=None,
    help="Well-visualised squamous cells a slide needs to be satisfactory [default: the model's scorer.json, "
    "else Bethesda's 5000 for ThinPrep]; fewer makes it Unsatisfactory, never NILM.",
)
@click.option(
    "--mpp",
    "slide_mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Microns per level-0 pixel of the slides, for files that lack it or record it wrongly (e.g. 0.25 "
    "for a 40x scan) [default: each file's own]; recorded in the store and each report.",
)
@click.option(
    "--export",
    "export_formats",
    multiple=True,
    metavar="FORMAT",
    help="After each slide, also write its detections into its folder as `cytolt export` does: geojson "
    "(detections.geojson for QuPath), csv, coco; repeat or comma-separate.",
)
@click.option(
    "--classifier",
    "classifier_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Second stage: a cell classifier's folder (`cytolt classify train`) that re-scores the top cells of "
    "each slide (see above). Checked before the first slide: its classes must be the model's.",
)
@click.option(
    "--classifier-top-n",
    type=click.IntRange(min=1),
    default=DEFAULT_TOP_N,
    show_default=True,
    help="Cells per slide the classifier re-scores, most suspicious first (abnormal probability).",
)
@click.option(
    "--classifier-combine",
    type=click.Choice(COMBINE_CHOICES),
    default="replace",
    show_default=True,
    help="replace: the classifier's probabilities become the cell's; mean: the mean of detector's and "
    "classifier's.",
)
@click.option("--quiet", is_flag=True, help="No progress bars and no line per slide.")
def screen(
    inputs: tuple[str, ...],
    run_dir: Path,
    model_dir: Path,
    device: str | None,
    engine: str,
    batch_size: int,
    tile_size: int,
    overlap: int | None,
    merge: str,
    read_threads: int,
    resume: bool,
    timeout: float | None,
    dask_workers: int | None,
    scheduler: str | None,
    memory_limit: str,
    min_squamous_cells: int | None,
    slide_mpp: float | None,
    export_formats: tuple[str, ...],
    classifier_dir: Path | None,
    classifier_top_n: int,
    classifier_combine: str,
    quiet: bool,
) -> None:
    from cytolt.detect import ModelFolder
    from cytolt.review.export import parse_formats
    from cytolt.screen import DaskExecutor, LocalExecutor, ScreenSettings, collect_slides
    from cytolt.screen.executors import load_model
    from cytolt.screen.settings import InvalidSetting

    try:
        model = ModelFolder.read(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    try:
        settings = ScreenSettings(
            tile_size=tile_size,
            overlap=overlap,
            merge=merge,
            batch_size=batch_size,
            read_threads=read_threads,
            device=device,
            timeout=timeout,
            min_squamous_cells=min_squamous_cells,
            slide_mpp=slide_mpp,
            classifier=classifier_dir,
            classifier_top_n=classifier_top_n,
            classifier_combine=classifier_combine,
        )
        settings.for_model(model.info)  # the classifier's class table against the model's
    except InvalidSetting as exc:
        raise click.BadParameter(str(exc), param_hint="--" + exc.field.replace("_", "-")) from None
    _load_classifier(settings.for_model(model.info))
    if dask_workers is not None and scheduler is not None:
        raise click.UsageError(
            "give --workers (a local Dask cluster) or --scheduler (a running one), not both"
        )
    on_dask = dask_workers is not None or scheduler is not None
    if on_dask and not _has_dask():
        raise click.UsageError("--workers and --scheduler need dask[distributed]: pip install 'cytolt[dask]'")
    try:
        exports = parse_formats(export_formats)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--export") from None
    try:
        slides = collect_slides(inputs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="INPUT") from None

    console = _Console(len(slides), quiet=quiet)
    factory = functools.partial(load_model, model, engine=engine)
    executor = (
        DaskExecutor(workers=dask_workers, scheduler=scheduler, memory_limit=memory_limit, factory=factory)
        if on_dask
        else LocalExecutor(factory=factory, progress=None if quiet else console.progress)
    )
    again = shlex.join(["cytolt", "screen", *inputs, "-o", str(run_dir), "--model", str(model_dir)])
    _run(
        slides,
        model,
        run_dir,
        settings,
        executor,
        resume=resume,
        console=console,
        again=again,
        exports=exports,
    )


def _run(
    slides: list[Path],
    model: ModelFolder,
    run_dir: Path,
    settings: ScreenSettings,
    executor: Executor,
    *,
    resume: bool,
    console: _Console,
    again: str,
    exports: tuple[str, ...] = (),
) -> None:
    """Screen the parsed inputs (:func:`cytolt.screen.screen_slides`), print the outcome, set the exit code.

    ``exports``: formats each finished slide is also exported to (:func:`cytolt.review.export.export_callbacks`).
    """
    from cytolt.review.export import export_callbacks
    from cytolt.screen import ScreeningInterrupted, screen_slides

    callbacks = console.callbacks()
    if exports:
        callbacks = export_callbacks(callbacks, run_dir, formats=exports)
    try:
        summary = screen_slides(
            slides, model, run_dir, settings, executor=executor, resume=resume, callbacks=callbacks
        )
    except KeyboardInterrupt as exc:
        console.close()
        finished = len(exc.summary.results) if isinstance(exc, ScreeningInterrupted) else 0
        click.echo(
            f"interrupted: {finished} of {len(slides)} slides finished and kept in {run_dir}; "
            f"to go on: {again} --resume (and the same options)",
            err=True,
        )
        click.get_current_context().exit(EXIT_INTERRUPTED)
    console.close()
    _final_line(summary, run_dir)
    if summary.failed:
        click.get_current_context().exit(EXIT_SOME_FAILED)


class _Console:
    """The run's progress bars (slides, and tiles of the slide being read) and its line per slide."""

    def __init__(self, n_slides: int, *, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.run_bar = tqdm(total=n_slides, desc="run", unit="slide", dynamic_ncols=True, disable=quiet)
        self.bars: dict[Path, Any] = {}

    def say(self, line: str, *, err: bool = False) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr if err else sys.stdout)  # above the bars, not through them

    def progress(self, path: Path, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(path)
        if bar is None:
            bar = self.bars[path] = tqdm(
                total=total, desc=path.name, unit="tile", leave=False, dynamic_ncols=True
            )
        bar.update(done - bar.n)

    def on_result(self, result: SlideResult, folder: Path) -> None:
        bar = self.bars.pop(result.path, None)
        if bar is not None:
            bar.close()
        self.run_bar.update()
        if not result.ok:
            self.say(f"FAILED {result.path.name}: {result.error}", err=True)
        elif not self.quiet:
            self.say(
                f"done   {result.path.name}: {_call(result)}, {len(result.detections)} cells, "
                f"{result.tiles_read} tiles, {result.timings['total']:.1f} s -> {folder / 'report.html'}"
            )

    def on_resumed(self, result: SlideResult, folder: Path) -> None:
        self.run_bar.update()
        if not self.quiet:
            self.say(
                f"kept   {result.path.name}: {_call(result)}, {len(result.detections)} cells (screened before)"
            )

    def callbacks(self) -> RunCallbacks:
        from cytolt.screen import RunCallbacks

        return RunCallbacks(on_result=self.on_result, on_resumed=self.on_resumed)

    def close(self) -> None:
        for bar in (*self.bars.values(), self.run_bar):
            bar.close()


def _call(result: SlideResult) -> str:
    """The slide's call as a lab reads it: adequacy first, and abnormal cells even on an unsatisfactory slide."""
    score = result.score
    if score is None:
        return "no call"
    call = f"{score.category} (score {score.slide_score:.3f})"
    if score.adequacy is None:
        return call
    if score.adequacy.satisfactory:
        return f"{call}, satisfactory, {score.interpretation}"
    seen = f"; abnormal cells seen: {score.interpretation}" if score.interpretation != "NILM" else ""
    return f"{call}: {'; '.join(score.adequacy.reasons)}{seen}"


def _final_line(summary: RunSummary, run_dir: Path) -> None:
    n, failed, kept = len(summary.results), len(summary.failed), len(summary.resumed)
    done = f"{n - failed} done" + (f" ({kept} kept from before)" if kept else "")
    from cytolt.store.run_folder import RunFolder

    click.echo(
        f"{n} slide{'s' * (n != 1)}: {done}, {failed} failed; summary: {RunFolder(run_dir).summary_path}"
    )


def _load_classifier(settings: ScreenSettings) -> None:
    """Load the second stage's classifier now (it is kept for the run), so one that does not load is a usage
    error naming its folder before any slide is read."""
    from cytolt.screen.second_stage import load_second_stage

    try:
        load_second_stage(settings)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.BadParameter(f"{settings.classifier}: {exc}", param_hint="--classifier") from None


def _has_dask() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None
