"""``cytolt synth``: synthetic TCT patch datasets and whole-slide images (library: :mod:`cytolt.synth`)."""

from __future__ import annotations

from pathlib import Path

import click

# Kept here (not imported from cytolt.synth) so that `cytolt synth --help` imports nothing heavy; a test
# checks they equal cytolt.synth.SLIDE_FORMATS and SLIDE_LABELS.
SLIDE_FORMAT_CHOICES = ("tiff", "aperio", "ome")
SLIDE_LABEL_CHOICES = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC")


def _parse_split(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three comma-separated fractions like 0.7,0.15,0.15; got {value!r}"
        ) from None
    if len(parts) != 3:
        raise click.BadParameter(f"expected three fractions (train,val,test); got {len(parts)} in {value!r}")
    return parts


@click.group("synth")
def synth() -> None:
    """Generate synthetic TCT (ThinPrep) cytology: long-tailed patch datasets and pyramidal slides.

    Classes, morphology and file layouts are described in docs/synth.md.
    """


@synth.command("patches", short_help="Long-tailed COCO + LVIS patch dataset.")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), required=True, help="Number of patches to write.")
@click.option("--size", type=click.IntRange(min=64), default=512, show_default=True, help="Patch side (px).")
@click.option(
    "--imbalance",
    type=click.FloatRange(min=1.0),
    default=100.0,
    show_default=True,
    help="Head/tail instance ratio; class counts decay geometrically in between.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option(
    "--split",
    callback=_parse_split,
    metavar="TRAIN,VAL,TEST",
    help="Write annotations_{train,val,test}.json with these fractions, e.g. 0.7,0.15,0.15.",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0.05, max=10),
    default=0.5,
    show_default=True,
    help="Microns per pixel of the patches.",
)
@click.option(
    "--image-format", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True, help="Image files."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def patches(
    out_dir: Path,
    images: int,
    size: int,
    imbalance: float,
    seed: int,
    split: tuple[float, float, float] | None,
    mpp: float,
    image_format: str,
    quiet: bool,
) -> None:
    """Write a COCO + LVIS patch dataset to OUT_DIR (images/ and annotations*.json)."""
    from cytolt.synth import make_patch_dataset

    try:
        summary = make_patch_dataset(
            out_dir,
            images=images,
            size=size,
            imbalance=imbalance,
            seed=seed,
            split=split,
            mpp=mpp,
            image_format=image_format,
            progress=not quiet,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    for name, path in summary["annotation_files"].items():
        click.echo(f"{name}: {path}")
    click.echo(f"images: {out_dir / 'images'} ({summary['images']} files)")
    click.echo("class            instances  train-images  frequency")
    for name, n in summary["instance_counts"].items():
        click.echo(f"{name:<18}{n:>9}  {summary['image_counts'][name]:>12}  {summary['frequency'][name]:>9}")


@synth.command("slide", short_help="Pyramidal slide (tiff, aperio, ome) with ground truth.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--size",
    type=(click.IntRange(min=64), click.IntRange(min=64)),
    default=(20000, 20000),
    show_default=True,
    metavar="W H",
    help="Level-0 width and height (px).",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0.05, max=10),
    default=0.25,
    show_default=True,
    help="Microns per pixel at level 0 (0.25 ~ a 40x scan).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(SLIDE_FORMAT_CHOICES),
    default="tiff",
    show_default=True,
    help="tiff: generic pyramidal TIFF; aperio: Aperio-like SVS; ome: OME-TIFF with SubIFD levels.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option(
    "--label",
    type=click.Choice(SLIDE_LABEL_CHOICES),
    default="NILM",
    show_default=True,
    help="Slide-level Bethesda category; fixes which abnormal cells appear and how many.",
)
@click.option(
    "--tile", type=click.Choice(["256", "512"]), default="256", show_default=True, help="Tile side (px)."
)
@click.option("--quality", type=click.IntRange(50, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Threads.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def slide(
    out: Path,
    size: tuple[int, int],
    mpp: float,
    fmt: str,
    seed: int,
    label: str,
    tile: str,
    quality: int,
    workers: int,
    quiet: bool,
) -> None:
    """Write a pyramidal slide to OUT and its ground truth to OUT.cells.json."""
    from cytolt.synth import make_slide

    try:
        truth = make_slide(
            out,
            size=size,
            mpp=mpp,
            format=fmt,
            seed=seed,
            label=label,
            tile=int(tile),
            quality=quality,
            workers=workers,
            progress=not quiet,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(f"slide: {truth.path} ({truth.format}, {truth.size[0]}x{truth.size[1]} px, {truth.mpp} um/px)")
    click.echo("levels: " + ", ".join(f"{w}x{h}" for w, h in truth.level_sizes))
    click.echo(f"ground truth: {truth.cells_path} ({len(truth.cells)} cells, label {truth.label})")
    counts = ", ".join(f"{k} {v}" for k, v in truth.counts().items() if v)
    click.echo(f"cells: {counts}")
