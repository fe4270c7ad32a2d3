"""``cytolt demo``: the main job end to end on built-in synthetic data.

1. a long-tailed synthetic TCT patch set (train/val/test),
2. synthetic slides of different Bethesda categories, one per slide format, and one nearly cell-free slide that
   must come out "Unsatisfactory",
3. a small Grad-Libra RetinaNet trained on the CPU in a few minutes (reused on later runs),
4. its slide scorer fit on a separate set of labelled calibration slides (``model/scorer.json``), since the
   default 0.5 thresholds mean little for a detector trained for a few minutes,
5. every demo slide screened into one run folder: ``run.sqlite``, per-slide ``report.json`` and ``report.html``,
   ``summary.csv``.

Each step is skipped when its output is already there, so a second run only screens again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cytolt

log = logging.getLogger("cytolt")

# (label, format, seed): a negative slide and abnormal ones, one per writer the product supports.
DEMO_SLIDES: tuple[tuple[str, str, int], ...] = (
    ("NILM", "aperio", 11),
    ("HSIL", "tiff", 12),
    ("LSIL", "ome", 13),
)
# One more slide, unsatisfactory on purpose: a NILM scan with 2% of the normal cellularity, so a new user sees
# the tool say "Unsatisfactory" (too few squamous cells) instead of calling an unexamined slide negative.
SPARSE_SLIDE: tuple[str, str, int, float] = ("NILM", "tiff", 14, 0.02)
# Labelled slides the slide scorer's thresholds are fit on (cytolt.screen.calibrate); seeds differ from the
# demo slides', so the demo's calls are made on slides the thresholds never saw.
CALIBRATION_SLIDES: tuple[tuple[str, int], ...] = (
    ("NILM", 101),
    ("NILM", 102),
    ("NILM", 103),
    ("ASC-US", 104),
    ("LSIL", 105),
    ("HSIL", 106),
    ("HSIL", 107),
    ("SCC", 108),
)
CALIBRATION_SIZE = 4096
DEMO_CONFIG = "retinanet_r18_gradlibra.py"


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's outputs are."""

    data_dir: Path
    slides: list[Path]
    model_dir: Path
    run_dir: Path
    calls: dict[str, str]
    labels: dict[str, str]
    adequacy: dict[str, str]


def configs_dir() -> Path:
    """The repository's ``configs/`` folder (cytolt is installed in editable mode by ``make setup``)."""
    path = Path(cytolt.__file__).resolve().parents[1] / "configs"
    if not path.is_dir():
        raise FileNotFoundError(f"configs folder not found at {path}; run the demo from a cytolt checkout")
    return path


def run_demo(
    out: str | Path,
    *,
    images: int = 600,
    slide_size: int = 6144,
    train_iters: int = 1000,
    retrain: bool = False,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out`` and return where its outputs are.

    Args:
        images: synthetic training patches (256 x 256 px at 0.5 um/px).
        slide_size: side of each synthetic slide in level-0 px (0.25 um/px); calibration slides are this size,
            at most 4,096 px.
        train_iters: training iterations of the demo detector (1,000 take about 2 minutes on 2 cores).
        retrain: train again even if a model from an earlier run is there.
    """
    from cytolt.detect import ModelFolder
    from cytolt.screen import screen_slides
    from cytolt.screen.calibrate import fit_slide_scorer
    from cytolt.synth import cells_path_for, make_patch_dataset, make_slide

    root = Path(out)
    data = root / "data"
    if not (data / "annotations_train.json").is_file():
        echo(f"[1/5] synthetic TCT patches -> {data}")
        make_patch_dataset(data, images=images, size=256, imbalance=50, seed=0, split=(0.7, 0.15, 0.15))
    else:
        echo(f"[1/5] synthetic TCT patches: reusing {data}")

    slides = []
    suffix = {"aperio": ".svs", "tiff": ".tiff", "ome": ".ome.tiff"}
    sparse_label, sparse_fmt, sparse_seed, sparse_density = SPARSE_SLIDE
    wanted = [(label, fmt, seed, 1.0, f"{label.lower()}_{fmt}") for label, fmt, seed in DEMO_SLIDES]
    wanted.append(
        (sparse_label, sparse_fmt, sparse_seed, sparse_density, f"sparse_{sparse_label.lower()}_{sparse_fmt}")
    )
    for label, fmt, seed, density, name in wanted:
        path = root / "slides" / f"{name}{suffix[fmt]}"
        if not (path.is_file() and cells_path_for(path).is_file()):
            echo(f"[2/5] synthetic {label} slide ({fmt}, {slide_size} x {slide_size} px) -> {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (slide_size, slide_size)
            make_slide(path, size=size, mpp=0.25, format=fmt, seed=seed, label=label, density=density)
        slides.append(path)

    model_dir = root / "model"
    retrained = retrain or not (model_dir / ModelFolder.META).is_file()
    if retrained:
        from cytolt.mm.train import export_model, train

        echo(
            f"[3/5] training a Grad-Libra RetinaNet-R18 for {train_iters} iterations on the CPU (a few minutes)"
        )
        work_dir = train(
            configs_dir() / "tct" / DEMO_CONFIG,
            work_dir=root / "work_dir",
            data_root=data,
            cfg_options={"train_cfg.max_iters": train_iters, "train_cfg.val_interval": train_iters},
            quiet=True,
        )
        export_model(work_dir, model_dir)
    else:
        echo(f"[3/5] detector: reusing {model_dir} (pass --retrain to train again)")

    if retrained or not (model_dir / ModelFolder.SCORER).is_file():
        calib = []
        for label, seed in CALIBRATION_SLIDES:
            path = root / "calibration" / f"{label.lower()}_{seed}.tiff"
            if not (path.is_file() and cells_path_for(path).is_file()):
                path.parent.mkdir(parents=True, exist_ok=True)
                side = min(CALIBRATION_SIZE, slide_size)
                make_slide(path, size=(side, side), mpp=0.25, format="tiff", seed=seed, label=label)
            calib.append(path)
        echo(
            f"[4/5] fitting the slide scorer on {len(calib)} labelled calibration slides -> {model_dir / ModelFolder.SCORER}"
        )
        fit = fit_slide_scorer(
            calib, [label for label, _ in CALIBRATION_SLIDES], model_dir, root / "calibration_run"
        )
        for name, entry in fit.report.items():
            if "threshold" in entry:
                echo(
                    f"      {name:<8} threshold {entry['threshold']:.3f} (sensitivity {entry['sensitivity']:.2f}, "
                    f"specificity {entry['specificity']:.2f} on the calibration slides)"
                )
        echo(
            f"      calibration slides called right: {fit.accuracy:.0%} "
            f"(default thresholds: {fit.accuracy_before:.0%})"
        )
    else:
        echo(f"[4/5] slide scorer: reusing {model_dir / ModelFolder.SCORER}")

    run_dir = root / "run"
    echo(f"[5/5] screening {len(slides)} slides -> {run_dir}")
    summary = screen_slides(slides, model_dir, run_dir)
    calls, adequacy = {}, {}
    for result, report_dir in zip(summary.results, summary.report_dirs, strict=True):
        report = json.loads((report_dir / "report.json").read_text())
        call = (report.get("score") or {}).get("category") or f"{report.get('status')}: {report.get('error')}"
        calls[Path(result.path).name] = str(call)
        judged = report.get("adequacy") or {}
        adequacy[Path(result.path).name] = "; ".join(
            [judged.get("status", "not judged"), *judged.get("reasons", [])]
        )
    made = [label for label, _, _ in DEMO_SLIDES] + [f"{SPARSE_SLIDE[0]}, {SPARSE_SLIDE[3]:.0%} cellularity"]
    labels = {path.name: label for path, label in zip(slides, made, strict=True)}
    return DemoResult(
        data_dir=data,
        slides=slides,
        model_dir=model_dir,
        run_dir=run_dir,
        calls=calls,
        labels=labels,
        adequacy=adequacy,
    )
