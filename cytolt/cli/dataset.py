"""``cytolt dataset``: training sets from annotated slides (library: :mod:`cytolt.datasets`).

A click group, so that other sources of training data (reviewed screening runs) sit next to ``build``.
"""

from __future__ import annotations

from pathlib import Path

import click

from cytolt.cli.synth import _parse_split

# Kept here (not imported from cytolt.datasets) so that `cytolt dataset --help` imports nothing heavy; a test
# checks they equal the library's.
IMAGE_FORMAT_CHOICES = ("jpg", "png")
DEFAULT_BACKGROUND = 0.25
DEFAULT_MIN_VISIBLE = 0.5

_BUILD_HELP = """Build a COCO + LVIS training set from annotated whole slides.

\b
SLIDES are slide files (SVS, TIFF, OME-TIFF, ... anything `cytolt screen`
reads). --annotations takes QuPath GeoJSON (one file per slide, named
after it: a.svs <- a.geojson or a.svs.geojson), a COCO file (one image per
slide, matched by file_name, level-0 boxes) or a CSV (slide, x0, y0, x1,
y1, class or slide, x, y, class), or a folder of them; repeat it for more.

\b
Patches of --size px at --mpp-out um/px are cut around the annotations
(each annotation whole in at least one patch), plus background patches of
cellular area away from them; slides (never patches) are split into
train/val/test, rare classes first into every split. OUT gets images/,
annotations_{train,val,test}.json, classes.md/.csv and examples.jpg.
See docs/datasets.md.
"""


def _parse_fractions(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    from cytolt.datasets.split import check_fractions

    try:
        return check_fractions(_parse_split(ctx, param, value))
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.group("dataset")
def dataset() -> None:
    """Make training sets: from annotated slides (build) or a reviewed screening run (from-review)."""


@dataset.command("build", help=_BUILD_HELP, short_help="Training set from annotated slides.")
@click.argument(
    "slides", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--annotations",
    "annotations",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Annotation file or folder (QuPath GeoJSON, COCO, CSV); repeatable.",
)
@click.option(
    "--class-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON map from the lab's names to training classes [default: every name is its own class].",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--mpp-out",
    type=click.FloatRange(min=0.05, max=10),
    default=0.5,
    show_default=True,
    help="Microns per pixel of the patches.",
)
@click.option("--size", type=click.IntRange(min=32), default=512, show_default=True, help="Patch side (px).")
@click.option(
    "--mpp",
    type=click.FloatRange(min=0.01, max=100),
    help="Microns per level-0 pixel of the slides, for slides without it or with wrong metadata.",
)
@click.option(
    "--drop-unmapped", is_flag=True, help="Drop annotation names the class map lacks (else refused)."
)
@click.option(
    "--split",
    callback=_parse_fractions,
    default="0.7,0.15,0.15",
    show_default=True,
    metavar="TRAIN,VAL,TEST",
    help="Fractions of the slides per split; a 0 split is not written.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the split and background choice."
)
@click.option(
    "--background",
    type=click.FloatRange(min=0),
    default=DEFAULT_BACKGROUND,
    show_default=True,
    help="Background patches per annotated patch, per slide (at least --min-background).",
)
@click.option(
    "--min-background",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Fewest background patches per slide.",
)
@click.option(
    "--min-visible",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=DEFAULT_MIN_VISIBLE,
    show_default=True,
    help="A box cut by a patch edge is kept (clipped) when this share of it is inside.",
)
@click.option(
    "--not-exhaustive",
    is_flag=True,
    help="Not every cell of the training classes is annotated: no class is taken as absent (LVIS negatives).",
)
@click.option(
    "--image-format",
    type=click.Choice(IMAGE_FORMAT_CHOICES),
    default="jpg",
    show_default=True,
    help="Patch files.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(
    slides: tuple[Path, ...],
    annotations: tuple[Path, ...],
    class_map: Path | None,
    out: Path,
    mpp_out: float,
    size: int,
    mpp: float | None,
    drop_unmapped: bool,
    split: tuple[float, float, float],
    seed: int,
    background: float,
    min_background: int,
    min_visible: float,
    not_exhaustive: bool,
    image_format: str,
    quiet: bool,
) -> None:
    from cytolt.datasets.build import build_dataset
    from cytolt.io import SlideError

    try:
        summary = build_dataset(
            slides,
            annotations,
            out,
            class_map=class_map,
            mpp=mpp_out,
            size=size,
            splits=split,
            seed=seed,
            slide_mpp=mpp,
            drop_unmapped=drop_unmapped,
            background=background,
            min_background=min_background,
            min_visible=min_visible,
            exhaustive=not not_exhaustive,
            image_format=image_format,
            progress=not quiet,
        )
    except (ValueError, SlideError, FileExistsError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(summary.format())


_FROM_REVIEW_HELP = """Build a training set from the reviews of a screening run.

\b
RUN is a `cytolt screen` run folder whose detections were reviewed (the
napari plugin's accept / reject / reclassify). Accepted cells become boxes
of the model's class, reclassified ones boxes of the reviewed class, and
rejected ones hard-negative patches (their class is a negative there).
Unreviewed detections inside a patch that score at least --keep-unreviewed
are kept as the model called them. Slides are split, never patches.

\b
Fine-tune the run's model on it:
  cytolt train CONFIG --data-root OUT --load-from MODEL_DIR
See docs/datasets.md ("Reviews become training data").
"""


@dataset.command("from-review", help=_FROM_REVIEW_HELP, short_help="Training set from a reviewed run.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--mpp-out",
    type=click.FloatRange(min=0.05, max=10),
    default=None,
    help="Microns per pixel of the patches [default: what the run's model read].",
)
@click.option("--size", type=click.IntRange(min=32), default=512, show_default=True, help="Patch side (px).")
@click.option(
    "--split",
    default="0.8,0.2,0",
    show_default=True,
    callback=_parse_fractions,
    help="train,val,test fractions of the reviewed slides.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split.")
@click.option(
    "--keep-unreviewed",
    type=click.FloatRange(min=0, max=1),
    default=0.5,
    show_default=True,
    help="Unreviewed detections in a patch scoring at least this are kept as boxes of the model's class.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def from_review(
    run_dir: Path,
    out: Path,
    mpp_out: float | None,
    size: int,
    split: tuple[float, float, float],
    seed: int,
    keep_unreviewed: float,
    quiet: bool,
) -> None:
    from cytolt.datasets.from_review import review_dataset
    from cytolt.io import SlideError

    try:
        summary = review_dataset(
            run_dir,
            out,
            mpp=mpp_out,
            size=size,
            splits=split,
            seed=seed,
            keep_unreviewed=keep_unreviewed,
            progress=not quiet,
        )
    except (ValueError, SlideError, FileExistsError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(summary.format())
