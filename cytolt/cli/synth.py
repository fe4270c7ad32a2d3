"""``cytolt synth``: synthetic TCT patch datasets and whole-slide images (library: :mod:`cytolt.synth`)."""

from __future__ import annotations

from pathlib import Path

import click

# Kept here (not imported from cytolt.synth) so that `cytolt synth --help` imports nothing heavy; a test
# checks they equal cytolt.synth.SLIDE_FORMATS, SLIDE_LABELS, slide.BLUR_PRESETS, classes.ABNORMAL_CLASSES
# and slide.BLUR_SIGMA_UM.
SLIDE_FORMAT_CHOICES = ("tiff", "aperio", "ome")
SLIDE_LABEL_CHOICES = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC")
BLUR_CHOICES = ("half", "all")
ABNORMAL_CLASS_CHOICES = ("ascus", "lsil", "hsil", "scc", "agc")
DEFAULT_BLUR_SIGMA_UM = 3.0


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


def _parse_abnormal(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, int] | None:
    """``("hsil=3", "ascus=1")`` -> ``{"hsil": 3, "ascus": 1}``; None when the option is not given."""
    if not value:
        return None
    out: dict[str, int] = {}
    for item in value:
        name, sep, count = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in ABNORMAL_CLASS_CHOICES or not count.strip().isdigit():
            raise click.BadParameter(
                f"expected CLASS=N with CLASS one of {', '.join(ABNORMAL_CLASS_CHOICES)} and N >= 0, "
                f"e.g. hsil=3; got {item!r}"
            )
        if name in out:
            raise click.BadParameter(f"{name} is given twice")
        out[name] = int(count)
    return out


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
@click.option(
    "--blur",
    type=click.Choice(BLUR_CHOICES),
    help="Render part of the slide out of focus, at every level: half = the right half, all = the whole slide. "
    "The ground truth records the blurred region and marks the cells in it.",
)
@click.option(
    "--blur-sigma",
    type=click.FloatRange(min=0.0, min_open=True),
    default=DEFAULT_BLUR_SIGMA_UM,
    show_default=True,
    metavar="UM",
    help="Gaussian sigma (microns) of the --blur defocus, on top of the normal focus.",
)
@click.option(
    "--density",
    type=click.FloatRange(0.0, 5.0),
    default=1.0,
    show_default=True,
    help="Cellularity: a multiplier of the normal cells, organisms and debris. 0 = blank glass (a failed or "
    "empty preparation), 0.01-0.05 = nearly cell-free. Abnormal cells still come from --label / --abnormal.",
)
@click.option(
    "--abnormal",
    multiple=True,
    callback=_parse_abnormal,
    metavar="CLASS=N",
    help=f"Exactly N abnormal cells of CLASS ({', '.join(ABNORMAL_CLASS_CHOICES)}) instead of the counts the label "
    "draws; classes not given get none. Repeatable: --abnormal hsil=2 --abnormal ascus=1.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def slide(
    ctx: click.Context,
    out: Path,
    size: tuple[int, int],
    mpp: float,
    fmt: str,
    seed: int,
    label: str,
    tile: str,
    quality: int,
    workers: int,
    blur: str | None,
    blur_sigma: float,
    density: float,
    abnormal: dict[str, int] | None,
    quiet: bool,
) -> None:
    """Write a pyramidal slide to OUT and its ground truth to OUT.cells.json.

    \b
    Specimen quality, to test adequacy and focus checks:
      cytolt synth slide blurred.tiff --size 8192 8192 --blur half
      cytolt synth slide blank.tiff --size 8192 8192 --density 0
      cytolt synth slide few.tiff --size 8192 8192 --label HSIL --abnormal hsil=2
    """
    from cytolt.synth import make_slide

    if blur is None and ctx.get_parameter_source("blur_sigma") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--blur-sigma sets the blur of --blur; give --blur half or --blur all too")
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
            blur=blur,
            blur_sigma_um=blur_sigma,
            density=density,
            abnormal=abnormal,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(f"slide: {truth.path} ({truth.format}, {truth.size[0]}x{truth.size[1]} px, {truth.mpp} um/px)")
    click.echo("levels: " + ", ".join(f"{w}x{h}" for w, h in truth.level_sizes))
    click.echo(f"ground truth: {truth.cells_path} ({len(truth.cells)} cells, label {truth.label})")
    counts = ", ".join(f"{k} {v}" for k, v in truth.counts().items() if v)
    click.echo(f"cells: {counts}")
    click.echo(f"squamous cells: {truth.squamous_cells} (density {truth.density:g})")
    if truth.blur_regions:
        click.echo(
            f"blurred: {len(truth.blur_regions)} region(s), sigma {truth.blur_sigma_um:g} um, "
            f"{truth.blurred_cellular_fraction:.1%} of the cellular area, "
            f"{truth.squamous_cells_blurred} squamous cells"
        )
