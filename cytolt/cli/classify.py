"""``cytolt classify``: the second-stage cell classifier (library: :mod:`cytolt.classify`).

A click group: ``crops`` (make a crop set), ``train``, ``eval``, ``predict``. Each command parses, calls the library
and prints; torch and the classifier load only inside the commands, so ``--help`` stays fast. Bad input (a file
that is not what it should be, crops that do not fit a model) is one line naming the file, exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cytolt.classify.crops import CropSet
    from cytolt.classify.predict import CropClassifier

# Kept here (not imported from cytolt.classify) so that --help imports no torch; a test checks they equal the library's.
LABEL_CHOICES = ("reviewed", "model")
DEFAULT_CONTEXT = 1.5


class InputError(click.ClickException):
    """Bad input: printed as one ``Error: ...`` line, exit status 2 (as click's usage errors)."""

    exit_code = 2


def _input_errors() -> tuple[type[Exception], ...]:
    from cytolt.io import SlideError

    return (ValueError, FileNotFoundError, FileExistsError, SlideError)


@click.group("classify")
def classify() -> None:
    """Second-stage cell classifier: cut crops, train, evaluate, predict. See docs/classify.md."""


_CROPS_HELP = """Write a crop set (OUT/crops.npy + OUT/crops.json) from one source.

\b
Sources (exactly one):
  --coco ANN --images DIR   ground-truth boxes of a COCO file (image mpp from
                            the file, or --image-mpp)
  --slides S [--slides S]   ground-truth cells of synthetic slides
                            (S.cells.json beside each slide)
  --run RUN_DIR             detections of a screening run: reviewed classes
                            (--labels reviewed: accepted and reclassified
                            cells) or the model's (--labels model, score at
                            least --min-score)
  --synthetic               long-tailed synthetic cells (--head crops of the
                            first class down to head/--imbalance of the last)

\b
Each crop is --size px at --mpp um/px around its cell's box centre; a cell
whose box times --context does not fit is zoomed out to fit (its own mpp is
recorded). Prints the class table with each class's shot group.
"""


@classify.command("crops", help=_CROPS_HELP, short_help="Make a crop set.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--coco", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="COCO annotation file."
)
@click.option(
    "--images", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Image folder of --coco."
)
@click.option(
    "--slides",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Synthetic slide with its .cells.json; repeatable.",
)
@click.option(
    "--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Run folder."
)
@click.option("--synthetic", is_flag=True, help="Generate long-tailed synthetic crops.")
@click.option("--size", type=click.IntRange(min=8), default=64, show_default=True, help="Crop side (px).")
@click.option(
    "--mpp",
    type=click.FloatRange(min=0.05, max=10),
    default=1.0,
    show_default=True,
    help="Microns per crop pixel.",
)
@click.option(
    "--context",
    type=click.FloatRange(min=0),
    default=DEFAULT_CONTEXT,
    show_default=True,
    help="The crop covers at least this times the cell's box side.",
)
@click.option(
    "--image-mpp", type=click.FloatRange(min=0.01, max=100), help="Microns per pixel of the --coco images."
)
@click.option(
    "--labels",
    type=click.Choice(LABEL_CHOICES),
    default="reviewed",
    show_default=True,
    help="--run: the reviewer's classes or the model's.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(min=0, max=1),
    default=0.5,
    show_default=True,
    help="--run --labels model: least detection score.",
)
@click.option(
    "--head",
    "head_count",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="--synthetic: crops of the first class.",
)
@click.option(
    "--imbalance",
    type=click.FloatRange(min=1),
    default=100.0,
    show_default=True,
    help="--synthetic: first/last class ratio.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="--synthetic: random seed.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def crops(
    out: Path,
    coco: Path | None,
    images: Path | None,
    slides: tuple[Path, ...],
    run_dir: Path | None,
    synthetic: bool,
    size: int,
    mpp: float,
    context: float,
    image_mpp: float | None,
    labels: str,
    min_score: float,
    head_count: int,
    imbalance: float,
    seed: int,
    quiet: bool,
) -> None:
    given = [
        name
        for name, v in (
            ("--coco", coco),
            ("--slides", slides),
            ("--run", run_dir),
            ("--synthetic", synthetic),
        )
        if v
    ]
    if len(given) != 1:
        raise click.UsageError(
            f"give exactly one of --coco, --slides, --run, --synthetic; got {', '.join(given) or 'none'}"
        )
    if (coco is None) != (images is None):
        raise click.UsageError("--coco and --images go together")
    if (out / "crops.json").exists():
        raise InputError(f"{out} already holds a crop set (crops.json); choose a new folder")
    from cytolt.classify import crops as lib

    try:
        if coco is not None and images is not None:
            made = lib.crops_from_coco(coco, images, size=size, mpp=mpp, image_mpp=image_mpp, context=context)
        elif slides:
            made = lib.crops_from_slides(slides, size=size, mpp=mpp, context=context)
        elif run_dir is not None:
            made = lib.crops_from_run(
                run_dir, size=size, mpp=mpp, min_score=min_score, labels=labels, context=context
            )
        else:
            from cytolt.classify.synth_crops import make_crop_set

            made = make_crop_set(
                head=head_count,
                imbalance=imbalance,
                size=size,
                mpp=mpp,
                seed=seed,
                context=context,
                progress=not quiet,
            )
    except _input_errors() as err:
        raise InputError(str(err)) from err
    made.write(out)
    click.echo(f"wrote {out}")
    click.echo(made.format())


def _read_crops(path: Path) -> CropSet:
    from cytolt.classify.crops import CropSet

    try:
        return CropSet.read(path)
    except (ValueError, FileNotFoundError) as err:
        raise InputError(str(err)) from err


_TRAIN_HELP = """Train a cell classifier on the crop set CROPS and write the model folder OUT_MODEL.

\b
--val is the crop set the run reports on (the table printed at the end and
the folder's metrics). --method names a long-tail method (docs/classify_methods.md;
ce is plain cross-entropy). OUT_MODEL gets classifier.json and
classifier.safetensors, read by `cytolt classify eval/predict` and by
`cytolt screen --classifier OUT_MODEL`.
"""


@classify.command("train", help=_TRAIN_HELP, short_help="Train a classifier.")
@click.argument("crops_dir", metavar="CROPS", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_model", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--val", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Validation crop set."
)
@click.option("--method", default="ce", show_default=True, help="Long-tail method name.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Learning rate.",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Backbone width (8x = features).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    crops_dir: Path,
    out_model: Path,
    val: Path | None,
    method: str,
    epochs: int,
    batch_size: int,
    lr: float,
    width: int,
    seed: int,
    quiet: bool,
) -> None:
    train_set = _read_crops(crops_dir)
    val_set = _read_crops(val) if val is not None else None
    if val_set is not None and (val_set.size, val_set.mpp) != (train_set.size, train_set.mpp):
        raise InputError(
            f"{val}: crops of {val_set.size} px at {val_set.mpp:g} um/px; {crops_dir} has {train_set.size} px at "
            f"{train_set.mpp:g} um/px"
        )
    from cytolt.classify.crops import CONTEXT
    from cytolt.classify.folder import ClassifierFolder
    from cytolt.classify.metrics import format_report
    from cytolt.classify.train import train_classifier

    try:
        result = train_classifier(
            train_set, val_set, method=method, epochs=epochs, batch_size=batch_size, lr=lr, width=width,
            seed=seed, progress=not quiet,
        )  # fmt: skip
    except ValueError as err:
        raise InputError(str(err)) from err
    folder = ClassifierFolder.write(
        out_model,
        result.model,
        classes=train_set.class_names,
        mpp=train_set.mpp,
        crop_size=train_set.size,
        context=train_set.context if train_set.context is not None else CONTEXT,
        train_counts=train_set.counts().tolist(),
        method=result.method,
        head=result.head,
        metrics=result.val_report,
        extra={
            "training": {
                "crops": str(crops_dir),
                "val": None if val is None else str(val),
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "seconds": round(result.seconds, 3),
                "history": result.history,
            }
        },
    )
    click.echo(f"wrote {folder.path} ({result.method}, {result.seconds:.1f} s)")
    if result.val_report is not None:
        click.echo(format_report(result.val_report))


def _classifier(model: Path) -> CropClassifier:
    from cytolt.classify.predict import CropClassifier

    try:
        return CropClassifier.from_folder(model)
    except (ValueError, FileNotFoundError) as err:
        raise InputError(str(err)) from err


@classify.command("eval", short_help="Evaluate a classifier on a crop set.")
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("crops_dir", metavar="CROPS", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report here."
)
def eval_(model: Path, crops_dir: Path, json_out: Path | None) -> None:
    """Evaluate the classifier folder MODEL on the labelled crop set CROPS.

    Prints accuracy, balanced accuracy, many/medium/few-shot accuracy (groups by
    the model's training counts: many > 100, few < 20), ECE and NLL, then the
    recall of every class.
    """
    from cytolt.classify.metrics import format_report

    clf = _classifier(model)
    crop_set = _read_crops(crops_dir)
    try:
        report = clf.evaluate(crop_set)
    except ValueError as err:
        raise InputError(f"{crops_dir}: {err}") from err
    click.echo(format_report(report))
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"wrote {json_out}")


@classify.command("predict", short_help="Class probabilities of every crop, as CSV.")
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("crops_dir", metavar="CROPS", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write."
)
def predict(model: Path, crops_dir: Path, out: Path) -> None:
    """Predict every crop of CROPS with the classifier folder MODEL.

    Writes one CSV row per crop: index, source, id, box (x0, y0, x1, y1), the
    crop set's class (true), the predicted class, its probability (score) and
    the probability of every class (p_<class>).
    """
    from cytolt.classify.predict import write_predictions_csv

    clf = _classifier(model)
    crop_set = _read_crops(crops_dir)
    try:
        clf.check_crops(crop_set)
    except ValueError as err:
        raise InputError(f"{crops_dir}: {err}") from err
    path = write_predictions_csv(out, crop_set, clf.predict(crop_set.images), clf.class_names)
    click.echo(f"wrote {path} ({len(crop_set)} crops)")
