"""``cytolt screen``: screen whole slides with an exported model (library: :func:`cytolt.screen.screen_slides`).

Exit codes: 0 every slide screened; 3 some slides failed (each recorded in run.sqlite, its report and
summary.csv, and named on stderr); 2 a usage error (bad option, not a model folder); 1 anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cytolt.screen import SlideResult

# Kept here (not imported from cytolt.screen) so that `cytolt screen --help` imports nothing heavy.
MERGE_CHOICES = ("nms", "wbf")
EXIT_SOME_FAILED = 3


@click.command("screen")
@click.argument("slides", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
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
    help="Threads reading tiles ahead of the model (0: read in the main thread).",
)
@click.option("--quiet", is_flag=True, help="No progress bars and no line per slide.")
def screen(
    slides: tuple[Path, ...],
    run_dir: Path,
    model_dir: Path,
    device: str | None,
    batch_size: int,
    tile_size: int,
    overlap: int | None,
    merge: str,
    read_threads: int,
    quiet: bool,
) -> None:
    """Screen SLIDE... for abnormal cells and write a report per slide into the run folder.

    A slide that cannot be read is recorded as failed and the run goes on; the exit code is then 3.
    """
    import torch
    from tqdm import tqdm

    from cytolt.detect import read_model_info
    from cytolt.screen import screen_slides

    try:
        read_model_info(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    if device is not None:
        try:
            torch.device(device)
        except RuntimeError as exc:
            raise click.BadParameter(str(exc), param_hint="--device") from None
    if overlap is not None and overlap >= tile_size:
        raise click.BadParameter(
            f"must be smaller than --tile-size {tile_size}; got {overlap}", param_hint="--overlap"
        )

    bars: dict[Path, tqdm] = {}

    def progress(path: Path, done: int, total: int) -> None:
        bar = bars.get(path)
        if bar is None:
            bar = bars[path] = tqdm(total=total, desc=path.name, unit="tile", leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)

    def on_result(result: SlideResult, folder: Path) -> None:
        bar = bars.pop(result.path, None)
        if bar is not None:
            bar.close()
        if not result.ok:
            click.echo(f"FAILED {result.path.name}: {result.error}", err=True)
        elif not quiet:
            call = (
                f"{result.score.category} (score {result.score.slide_score:.3f})"
                if result.score
                else "no call"
            )
            click.echo(
                f"done   {result.path.name}: {call}, {len(result.detections)} cells, {result.tiles_read} tiles, "
                f"{result.timings['total']:.1f} s -> {folder / 'report.html'}"
            )

    summary = screen_slides(
        slides,
        model_dir,
        run_dir,
        device=device,
        batch_size=batch_size,
        tile_size=tile_size,
        overlap=overlap,
        workers=read_threads,
        merge=merge,
        progress=None if quiet else progress,
        on_result=on_result,
    )
    n, failed = len(summary.results), len(summary.failed)
    click.echo(
        f"{n} slide{'s' * (n != 1)}: {n - failed} done, {failed} failed; summary: {run_dir / 'summary.csv'}"
    )
    if failed:
        click.get_current_context().exit(EXIT_SOME_FAILED)
