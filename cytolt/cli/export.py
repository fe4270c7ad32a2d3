"""``cytolt export RUN``: a run's detections per slide as QuPath GeoJSON, CSV and COCO results
(library: :func:`cytolt.review.export.export_run`)."""

from __future__ import annotations

from pathlib import Path

import click

# Kept here (not imported from cytolt.review.export) so that `cytolt export --help` imports nothing heavy;
# tests hold the two equal.
FORMAT_FILES = {
    "geojson": "detections.geojson",
    "csv": "detections.csv",
    "coco": "detections_coco.json",
}

_HELP = f"""Export a screening run's detections, one set of files per slide.

\b
RUN is a folder written by `cytolt screen` (holding run.sqlite). Each
slide screened to the end gets, in its folder RUN/<slide folder>/ (or
OUT/<slide folder>/ with --out):
  {FORMAT_FILES["geojson"]:<22}QuPath GeoJSON: one detection object per
                        cell, a box in level-0 pixels, classified by
                        the reviewed class (else the model's) in the
                        model's colour; measurements: score, p_<class>,
                        review_accepted (1 accepted or reclassified, 0
                        rejected); the review decision, reviewer, time
  {FORMAT_FILES["csv"]:<22}one row per detection: box, model class,
                        score, per-class scores, latest review
  {FORMAT_FILES["coco"]:<22}COCO results (image_id = the slide's store
                        id, category_id = model label + 1, bbox x y w h)
Failed or unfinished slides are skipped with a note. To see the cells
in QuPath, drag detections.geojson onto the slide open there; napari
opens it with the napari-cytolt plugin.

\b
The files hold no slide metadata: no slide path or file name, no label
or macro image, no description text (these can carry patient data).

\b
Filters (the same for every format): --min-score keeps score >= X;
--classes keeps those classes, a reclassified cell counting as its
reviewed class; --reviewed-only keeps cells a reviewer decided on.
"""


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@click.command("export", help=_HELP)
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write into OUT/<slide folder>/ instead of the run's slide folders.",
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help=f"File to write: {', '.join(FORMAT_FILES)}; repeat or comma-separate [default: all three].",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Keep detections whose model score is at least this.",
)
@click.option(
    "--classes",
    "classes",
    multiple=True,
    metavar="A,B",
    help="Keep only these classes (comma-separated or repeated); a reclassified cell counts as its new class.",
)
@click.option("--reviewed-only", is_flag=True, help="Keep only detections with a review decision.")
@click.option("--quiet", is_flag=True, help="No progress bar and no line per slide.")
def export(
    run_dir: Path,
    out: Path | None,
    formats: tuple[str, ...],
    min_score: float,
    classes: tuple[str, ...],
    reviewed_only: bool,
    quiet: bool,
) -> None:
    from cytolt.review.export import export_run, parse_formats
    from cytolt.store.export import ExportSelection

    try:
        chosen = parse_formats(formats) if formats else tuple(FORMAT_FILES)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--format") from None
    if not chosen:
        raise click.BadParameter(
            f"no format named; choose from {', '.join(FORMAT_FILES)}", param_hint="--format"
        )
    names = _split(classes)
    selection = ExportSelection(min_score=min_score, classes=names or None, reviewed_only=reviewed_only)
    try:
        done = export_run(run_dir, out=out, formats=chosen, selection=selection, progress=not quiet)
    except ValueError as exc:  # not a run folder, or a class the run does not have: both named
        raise click.UsageError(str(exc)) from None
    root = run_dir if out is None else out
    for item in done:
        if item.skipped:
            click.echo(f"{item.slide}: {item.note}", err=True)
        elif not quiet:
            files = ", ".join(str(Path(item.folder) / p.name) for p in item.files.values())
            click.echo(f"{item.slide}: {item.count} detections -> {files}")
    exported = [d for d in done if not d.skipped]
    click.echo(
        f"exported {len(exported)} of {len(done)} slides ({sum(d.count for d in exported)} detections) "
        f"into {root}"
    )
