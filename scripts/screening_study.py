"""Screening study on synthetic TCT: a cohort of slides screened end to end -> docs/results/screening.md.

    .venv/bin/python scripts/screening_study.py                  # CPU default: 320 test + 60 calibration slides
    .venv/bin/python scripts/screening_study.py --large --device cuda        # full-size slides (a GPU job)
    .venv/bin/python scripts/screening_study.py --model runs/my_model        # another exported model folder
    .venv/bin/python scripts/screening_study.py --classifier runs/cells      # with the second stage (issue 20)

What it does (issue 16, item 4), each step reused when its output is already there:

1. two cohorts of synthetic slides (cytolt.synth.make_slide), drawn from the slide kinds in KINDS: a test cohort
   (most slides NILM; ASC-US, LSIL, ASC-H, AGC, HSIL and SCC slides; slides whose only abnormal cells are 1-5;
   unsatisfactory ones: blank, low cellularity, out of focus) and a calibration cohort of satisfactory slides
   with other seeds. Slides already written are kept.
2. the model: --model, else demo_out/model (what `make demo` trains), else one trained here as the demo
   trains it (kept in WORK_ROOT/trained_model). Its weights are copied into the study's work folder and the
   slide scorer is fit there (cytolt.screen.calibrate.fit_slide_scorer) on the calibration cohort only, so
   the model folder given is never written to.
3. the test cohort screened with cytolt.screen.screen_slides into one run folder (resume=True: a slide already
   screened with the same model and settings is kept).
4. the figures, from each slide's report.json and the run's review queue against the generator's ground
   truth: adequacy, sensitivity and specificity at ASC-US+, LSIL+ and HSIL+ (Wilson 95 % intervals), ROC AUC
   (bootstrap 95 % interval), the confusion of interpretations, the gallery hit rate at 10 and 30 review items,
   the triage fraction, and the cost (slides per hour, seconds per slide, review items per slide).
   Written to OUT/screening.md, OUT/screening.json, OUT/screening_roc.png and OUT/screening_kinds.png.

With ``--classifier MODEL`` (a ``cytolt classify train`` folder) both cohorts are screened with the second stage
(``ScreenSettings.classifier``: the calibration cohort too, so the scorer is fit on the scores it will see), into
run folders of their own (``*_run_<classifier>_<top n>_<combine>``, so the run without it stays resumable), and
the page and json go to OUT/screening_classifier/ unless --out is given; screening.json then holds the stage
(``setup.second_stage``) and each slide's ``second_stage`` (cells re-scored, classes changed, seconds).

Report fields read (each with .get, so older reports work): status, error, score.category, score.slide_score,
score.counts, adequacy (else score.adequacy: status, reasons, kept whole per slide), interpretation.bethesda,
timings. A report without adequacy is taken as satisfactory (unless its category is Unsatisfactory); without an
interpretation, the interpretation comes from the triage call (NILM -> NILM, ASC-US+ -> ASC-US, HSIL+ -> HSIL)
or, on an unsatisfactory slide, from the most severe abnormal class among score.counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cytolt.bethesda import (
    ABNORMAL,
    INTERPRETATIONS,
    UNSATISFACTORY,
    class_key,
    interpretation_of_class,
    more_severe,
)
from cytolt.evaluate.screening import (
    CUTOFFS,
    at_cutoffs,
    confusion,
    counted_call,
    gallery_hit_rate,
    proportion,
    roc_auc_with_ci,
    sensitivity_specificity,
    triage_fraction,
)

ROOT = Path(__file__).resolve().parents[1]
# Level-0 side (px, 0.25 um/px) of the CPU default's slides: 2560 px is 640 um, 1280 px at the model's 0.5 um/px:
# 3 x 3 tiles of 512 px with the 128 px overlap, as many as 2048 px needs, with 1.6 times its cells (about 40
# squamous cells on a NILM slide). Measured with the demo's detector on the shared 2-core machine: 4.7 s to
# screen a slide and 0.9 s to make one, so the default's 380 slides take about 36 minutes (3072 px: 16 tiles,
# 8.5 s per slide, over an hour).
DEFAULT_SIZE = 2560
# --large: a 20k x 20k slide (5 mm square at 0.25 um/px), the size DOMAIN.md asks cytolt.synth to make fast.
LARGE_SIZE = 20480
MPP = 0.25
TEST_SEED = 10_000  # slide i of the test cohort has seed TEST_SEED + i
CALIBRATION_SEED = (
    20_000  # and of the calibration cohort CALIBRATION_SEED + i: the cohorts never share a slide
)
GALLERY_K = (10, 30)  # review items counted from the front of each slide's queue
# The demo's training recipe (cytolt.demo.run_demo's defaults), for when no model folder is there.
TRAIN_IMAGES = 600
TRAIN_ITERS = 1000
# Published figures the page quotes (DOMAIN.md, issue 16).
PUBLISHED = (
    "Cheng et al. 2021 (Nature Communications, 1,170 test WSIs): sensitivity 95.1 % at specificity 93.5 % for "
    "ASC-US+, about 1.5 min per WSI.",
    "Hologic Genius Digital Diagnostics (FDA de novo 2024, 596 cases): high-grade sensitivity 100 % (86 % by "
    "microscope), specificity 93 % (98 %); review 194.5 s per case vs 485 s.",
    "BD FocalPoint GS: ranks slides and sets up to 25 % aside as no further review.",
)
# Triage call -> the interpretation it stands for when a report carries no interpretation.
TRIAGE_INTERPRETATION = {"NILM": "NILM", "ASC-US+": "ASC-US", "HSIL+": "HSIL"}
READING_MARKER = "<!-- READING: write from the numbers of a real run of the default -->"
# A person's reading of a real run's numbers, kept apart so a regenerated page keeps it (rewrite it when the
# numbers change); without it the page holds the marker.
READING_FILE = "screening_reading.md"


def _reading(out: Path) -> list[str]:
    path = out / READING_FILE
    if path.is_file():
        return [path.read_text().strip()]
    return [READING_MARKER, "", "_(to be written from the numbers above)_"]


@dataclass(frozen=True)
class Kind:
    """One kind of slide in the cohorts.

    Attributes:
        name: how the tables name it.
        label: the Bethesda label the slide is made with (``make_slide(label=)``): which abnormal cells it has.
        adequate: the truth adequacy: False for a specimen a lab must call unsatisfactory.
        test, calibration: slides of this kind per 320 test / 60 calibration slides.
        blur: ``make_slide(blur=)``: None, ``"half"`` (the right half out of focus) or ``"all"``.
        density: ``make_slide(density=)``, the cellularity (1 normal, 0 blank glass).
        few: the slide's only abnormal cells are 1-5 of this class (``make_slide(abnormal=)``).
    """

    name: str
    label: str
    adequate: bool
    test: int
    calibration: int
    blur: str | None = None
    density: float = 1.0
    few: str | None = None

    @property
    def truth(self) -> str:
        """The true interpretation: the label, or ``Unsatisfactory``."""
        return self.label if self.adequate else UNSATISFACTORY

    @property
    def group(self) -> str:
        """``"unsatisfactory"``, ``"negative"`` or ``"abnormal"``: what the per-kind chart asks of it."""
        if not self.adequate:
            return "unsatisfactory"
        return "negative" if self.label == "NILM" else "abnormal"

    def make_kwargs(self, seed: int) -> dict[str, Any]:
        """The ``make_slide`` arguments beyond size, mpp, format and seed (only those this kind needs)."""
        out: dict[str, Any] = {"label": self.label}
        if self.blur is not None:
            out["blur"] = self.blur
        if self.density != 1.0:
            out["density"] = self.density
        if self.few is not None:
            out["abnormal"] = {self.few: 1 + seed % 5}
        return out


# An enriched cohort, as screening studies use (a routine one is ~93 % NILM and would hold a handful of HSIL+
# slides): 55 % NILM, 36 % abnormal (a third of those with only 1-5 abnormal cells), 9 % unsatisfactory.
# Low cellularity is 3 % of the normal density: below the 8 % that Bethesda's 5,000 of a ThinPrep spot's
# ~62,500 cells sets (cytolt.screen.calibrate.MIN_SQUAMOUS_FRACTION), and far enough below it that a slide's
# handful of squamous cells does not reach it by chance.
KINDS: tuple[Kind, ...] = (
    Kind("NILM", "NILM", True, 170, 24),
    Kind("NILM, right half out of focus", "NILM", True, 8, 2, blur="half"),
    Kind("ASC-US", "ASC-US", True, 20, 6),
    Kind("LSIL", "LSIL", True, 18, 6),
    Kind("ASC-H", "ASC-H", True, 10, 4),
    Kind("AGC", "AGC", True, 8, 4),
    Kind("HSIL", "HSIL", True, 16, 6),
    Kind("SCC", "SCC", True, 8, 3),
    Kind("ASC-US, 1-5 cells", "ASC-US", True, 6, 0, few="ascus"),
    Kind("LSIL, 1-5 cells", "LSIL", True, 8, 1, few="lsil"),
    Kind("HSIL, 1-5 cells", "HSIL", True, 12, 3, few="hsil"),
    Kind("SCC, 1-5 cells", "SCC", True, 4, 0, few="scc"),
    Kind("AGC, 1-5 cells", "AGC", True, 4, 1, few="agc"),
    Kind("blank", "NILM", False, 8, 0, density=0.0),
    Kind("low cellularity (3 %)", "NILM", False, 8, 0, density=0.03),
    Kind("out of focus", "NILM", False, 8, 0, blur="all"),
    Kind("low cellularity (3 %), HSIL cells", "HSIL", False, 4, 0, density=0.03),
)


@dataclass(frozen=True)
class CohortSlide:
    """One slide of a cohort: its file, kind and seed."""

    path: Path
    kind: Kind
    seed: int

    @property
    def name(self) -> str:
        return self.path.name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="exported model folder (cytolt export-model); default demo_out/model if there, else one trained "
        "here as `cytolt demo` trains it (WORK_ROOT/trained_model, reused)",
    )
    p.add_argument(
        "--test-slides", type=int, default=320, help="test cohort size (at least 300 for the study)"
    )
    p.add_argument("--calibration-slides", type=int, default=60, help="calibration cohort size")
    p.add_argument(
        "--slide-size",
        type=int,
        default=None,
        help=f"level-0 side of each slide in px at {MPP} um/px (default {DEFAULT_SIZE}; {LARGE_SIZE} with --large)",
    )
    p.add_argument(
        "--large",
        action="store_true",
        help=f"full-size slides ({LARGE_SIZE} px, {(LARGE_SIZE / DEFAULT_SIZE) ** 2:.0f} times the default's pixels): a GPU-sized run",
    )
    p.add_argument("--device", default=None, help="torch device for the model (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (printed with the results)")
    p.add_argument("--read-threads", type=int, default=1, help="tile reading threads per slide")
    p.add_argument("--html", action="store_true", help="also write each slide's report.html (slower)")
    p.add_argument(
        "--work-root",
        type=Path,
        default=ROOT / "work_dirs" / "screening_study",
        help="slides, model copy and run folders go to WORK_ROOT/<size>px (kept for --resume and inspection)",
    )
    p.add_argument(
        "--classifier",
        type=Path,
        default=None,
        help="screen with the second stage: a cell classifier's folder (cytolt classify train)",
    )
    p.add_argument(
        "--classifier-top-n", type=int, default=None, help="cells per slide it re-scores (default: cytolt's)"
    )
    p.add_argument(
        "--classifier-combine", choices=("replace", "mean"), default="replace", help="how its scores combine"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the page and plots go (default docs/results, docs/results/screening_classifier with "
        "--classifier)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the AUC interval")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.large and args.slide_size is not None:
        p.error("--large sets the slide size; give one of --large and --slide-size")
    args.slide_size = args.slide_size or (LARGE_SIZE if args.large else DEFAULT_SIZE)
    # The store keeps absolute slide paths; a relative work root made every review-queue lookup miss.
    args.work_root = args.work_root.resolve()
    if args.out is None:
        args.out = ROOT / "docs" / "results" / ("screening_classifier" if args.classifier else "")
    if args.classifier_top_n is not None and args.classifier_top_n < 1:
        p.error("--classifier-top-n must be >= 1")
    for name in ("test_slides", "calibration_slides", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.slide_size < 512:
        p.error("--slide-size must be at least 512 px")
    return args


def is_default(args: argparse.Namespace) -> bool:
    """Whether this is the study's CPU default (the run the docs quote)."""
    return (args.test_slides, args.calibration_slides, args.slide_size) == (320, 60, DEFAULT_SIZE)


# ------------------------------------------------------------------------------------------------ cohorts
def schedule(weights: Sequence[int], n: int) -> list[int]:
    """``n`` kind indices in smooth weighted round-robin order (the nginx upstream scheduler): every prefix
    holds the kinds in about their weights' proportions and the first ``sum(weights)`` exactly, so a smaller
    cohort is a fair sample of the mix and a larger one keeps the slides of a smaller one."""
    total = sum(weights)
    current = [0] * len(weights)
    out = []
    for _ in range(n):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        out.append(best)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def cohort(folder: Path, n: int, *, calibration: bool) -> list[CohortSlide]:
    weights = [k.calibration if calibration else k.test for k in KINDS]
    seed0 = CALIBRATION_SEED if calibration else TEST_SEED
    prefix = "c" if calibration else "t"
    return [
        CohortSlide(folder / f"{prefix}{i:03d}_{slug(KINDS[k].name)}.tiff", KINDS[k], seed0 + i)
        for i, k in enumerate(schedule(weights, n))
    ]


def check_generator(slides: Sequence[CohortSlide]) -> None:
    """Fail now, with what is missing, if make_slide cannot draw every kind of the cohort."""
    from cytolt.synth import make_slide

    accepted = set(inspect.signature(make_slide).parameters)
    needed = {key for s in slides for key in s.kind.make_kwargs(s.seed)} - accepted
    if needed:
        raise SystemExit(
            f"cytolt.synth.make_slide takes no {', '.join(sorted(needed))} argument: the slide kinds blank, low "
            "cellularity, out of focus and 1-5 abnormal cells need the generator of issue 16 item 2 "
            "(make_slide(blur=, density=, abnormal=))"
        )


def generate(slides: Sequence[CohortSlide], size: int, times: dict[str, float], *, quiet: bool) -> None:
    """Write the slides not there yet (slide file and its ``.cells.json``); ``times`` gets their seconds."""
    from tqdm import tqdm

    from cytolt.synth import cells_path_for, make_slide

    todo = [s for s in slides if not (s.path.is_file() and cells_path_for(s.path).is_file())]
    for s in tqdm(
        todo, desc=f"slides -> {slides[0].path.parent.name}", unit="slide", disable=quiet or not todo
    ):
        start = time.perf_counter()
        s.path.parent.mkdir(parents=True, exist_ok=True)
        make_slide(
            s.path, size=(size, size), mpp=MPP, format="tiff", seed=s.seed, **s.kind.make_kwargs(s.seed)
        )
        times[s.name] = time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ model
def source_model(args: argparse.Namespace) -> Path:
    """The model folder to study (see --model); trains one when there is none."""
    from cytolt.detect import ModelFolder

    if args.model is not None:
        return ModelFolder.read(args.model).path  # ValueError / FileNotFoundError name what is wrong
    demo = ROOT / "demo_out" / "model"
    if (demo / ModelFolder.META).is_file():
        return demo
    trained = args.work_root / "trained_model"
    if not (trained / ModelFolder.META).is_file():
        train_model(args.work_root, trained)
    return trained


def train_model(work_root: Path, model_dir: Path) -> None:
    """Train and export a detector as `cytolt demo` does (the demo's patch set, config and iterations)."""
    from cytolt.demo import DEMO_CONFIG, configs_dir
    from cytolt.mm.train import export_model, train
    from cytolt.synth import make_patch_dataset

    data = work_root / "train_data"
    if not (data / "annotations_train.json").is_file():
        print(f"no model folder: making {TRAIN_IMAGES} training patches -> {data}", flush=True)
        make_patch_dataset(data, images=TRAIN_IMAGES, size=256, imbalance=50, seed=0, split=(0.7, 0.15, 0.15))
    print(
        f"training {DEMO_CONFIG} for {TRAIN_ITERS} iterations (the demo's detector) -> {model_dir}",
        flush=True,
    )
    work_dir = train(
        configs_dir() / "tct" / DEMO_CONFIG,
        work_dir=work_root / "train_work",
        data_root=data,
        cfg_options={"train_cfg.max_iters": TRAIN_ITERS, "train_cfg.val_interval": TRAIN_ITERS},
        quiet=True,
    )
    export_model(work_dir, model_dir)


def model_copy(source: Path, copy: Path) -> Path:
    """``copy`` holding the files of ``source`` that fix its detections, never its scorer.json; an old copy of
    another model is replaced (and its fitted scorer dropped)."""
    from cytolt.detect import ModelFolder

    src = ModelFolder.read(source)
    if (copy / ModelFolder.META).is_file() and ModelFolder.read(copy).identity() == src.identity():
        return copy
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    for name in ModelFolder.IDENTITY_FILES:
        shutil.copy2(src.path / name, copy / name)
    return copy


def calibrate(model: Path, slides: Sequence[CohortSlide], run_dir: Path, settings: Any) -> dict[str, Any]:
    """Fit the slide scorer of ``model`` on the calibration cohort (every run: the fit is cheap beside the test
    cohort, and a cached one would outlive a change to the fitting code)."""
    from cytolt.detect import ModelFolder
    from cytolt.screen.calibrate import fit_slide_scorer

    start = time.perf_counter()
    print(
        f"fitting the slide scorer on {len(slides)} calibration slides -> {model / ModelFolder.SCORER}",
        flush=True,
    )
    fit = fit_slide_scorer(
        [s.path for s in slides], [s.kind.label for s in slides], model, run_dir, settings=settings
    )
    scorer = fit.scorer.to_dict()
    return {
        "seconds": time.perf_counter() - start,
        "accuracy": fit.accuracy,
        "accuracy_before": fit.accuracy_before,
        "thresholds": scorer.get("thresholds"),
        "adequacy_rules": scorer.get("adequacy"),
        "report": fit.report,
    }


# ------------------------------------------------------------------------------------------------ screening
def screen(model: Path, slides: Sequence[CohortSlide], run_dir: Path, settings: Any, *, quiet: bool):
    """Screen the test cohort (resumed); returns the run summary and the wall seconds of this call."""
    from tqdm import tqdm

    from cytolt.screen import RunCallbacks, screen_slides

    with tqdm(total=len(slides), desc="screening the test cohort", unit="slide", disable=quiet) as bar:
        tick = RunCallbacks(on_result=lambda r, d: bar.update(1), on_resumed=lambda r, d: bar.update(1))
        start = time.perf_counter()
        summary = screen_slides(
            [s.path for s in slides], model, run_dir, settings, resume=True, callbacks=tick
        )
    return summary, time.perf_counter() - start


def called(report: dict[str, Any]) -> dict[str, Any]:
    """What the system called a slide, read from its report (see the module docstring for the fields)."""
    score = report.get("score") or {}
    category = score.get("category")
    adequacy = report.get("adequacy") or score.get("adequacy") or {}
    failed = report.get("status") != "done"
    unsatisfactory = failed or adequacy.get("status") == "unsatisfactory" or category == UNSATISFACTORY
    interpretation = (report.get("interpretation") or {}).get("bethesda")
    if interpretation in INTERPRETATIONS:
        source = "interpretation"
    elif category in TRIAGE_INTERPRETATION:
        interpretation, source = TRIAGE_INTERPRETATION[category], "triage call"
    else:  # unsatisfactory (or failed) without an interpretation: the abnormal classes counted, if any
        counts = score.get("counts") or {}
        seen = [interpretation_of_class(c) for c, n in counts.items() if n > 0]
        interpretation, source = more_severe([i for i in seen if i]), "counts"
    return {
        "failed": failed,
        "error": report.get("error"),
        "unsatisfactory": unsatisfactory,
        "reasons": [str(r) for r in adequacy.get("reasons") or []],
        "adequacy": adequacy,
        "category": category,
        "interpretation": interpretation,
        "interpretation_from": source,
        "slide_score": float(score.get("slide_score") or 0.0),
        "seconds": float((report.get("timings") or {}).get("total") or 0.0),
        "timings": report.get("timings") or {},
        "second_stage": second_stage_summary(report),
    }


def second_stage_summary(report: dict[str, Any]) -> dict[str, Any] | None:
    """A slide's second stage from its report: cells re-scored, classes changed, seconds (None without one)."""
    block = report.get("second_stage")
    if not block:
        return None
    return {k: block.get(k) for k in ("cells_rescored", "labels_changed", "seconds")}


def reason_kind(reason: str) -> str:
    """An adequacy reason with its numbers replaced by N, so that slides can be counted per kind of reason."""
    return re.sub(r"\d[\d,.]*", "N", reason)


def planted_abnormal(slide: Path) -> list[list[float]]:
    """Ground-truth boxes of the slide's abnormal cells (cytolt.bethesda.ABNORMAL classes)."""
    from cytolt.synth import cells_path_for

    cells = json.loads(cells_path_for(slide).read_text())["cells"]
    return [c["box"] for c in cells if class_key(c["class"]) in ABNORMAL]


def records(slides: Sequence[CohortSlide], summary: Any) -> list[dict[str, Any]]:
    """One record per test slide: truth, call, the review queue's boxes in order, and its cost."""
    from cytolt.review import ReviewQueue
    from cytolt.store import DetectionStore

    out = []
    folders = {Path(r.path).resolve(): d for r, d in zip(summary.results, summary.report_dirs, strict=True)}
    with DetectionStore(summary.store_path, readonly=True) as store:
        for s in slides:
            folder = folders[s.path.resolve()]
            report = json.loads((folder / "report.json").read_text())
            sid = store.find_slide(s.path)
            queue = ReviewQueue(store, sid, per_class=max(GALLERY_K)) if sid is not None else None
            items = queue.items if queue is not None else []
            out.append(
                {
                    "slide": s.name,
                    "kind": s.kind.name,
                    "seed": s.seed,
                    "truth": s.kind.truth,
                    "label": s.kind.label,
                    "few_cells": s.kind.few is not None,
                    "planted_abnormal": planted_abnormal(s.path),
                    **called(report),
                    "review_items": len(items),
                    "review_boxes": [list(it.box) for it in items[: max(GALLERY_K)]],
                }
            )
    return out


# ------------------------------------------------------------------------------------------------ figures
def figures(recs: Sequence[dict[str, Any]], *, n_boot: int) -> dict[str, Any]:
    """Every figure of the study from the slide records (cytolt.evaluate.screening)."""
    counted = [counted_call(r["unsatisfactory"], r["interpretation"]) for r in recs]
    truth_ok = [r["truth"] != UNSATISFACTORY for r in recs]
    flagged = [r["unsatisfactory"] for r in recs]
    # Adequacy as a test for "unsatisfactory": sensitivity = unsatisfactory slides caught, specificity =
    # satisfactory slides not flagged.
    adequacy = sensitivity_specificity([not ok for ok in truth_ok], flagged)
    seen = [r for r in recs if r["truth"] == UNSATISFACTORY and r["planted_abnormal"]]
    adequacy["abnormal_cells_listed_on_unsatisfactory"] = proportion(
        sum(r["interpretation"] != "NILM" for r in seen), len(seen)
    )
    adequacy["reasons"] = dict(
        Counter(reason_kind(reason) for r in recs if r["unsatisfactory"] for reason in r["reasons"])
    )

    out: dict[str, Any] = {
        "slides": len(recs),
        "failed": sum(r["failed"] for r in recs),
        "interpretation_from": dict(Counter(r["interpretation_from"] for r in recs)),
        "adequacy": adequacy,
        "cutoffs": at_cutoffs([r["truth"] for r in recs], counted),
    }
    sat = [i for i, ok in enumerate(truth_ok) if ok]
    out["roc"] = {}
    for name in ("ASC-US+", "HSIL+"):
        labels = [recs[i]["truth"] in CUTOFFS[name] for i in sat]
        scores = [recs[i]["slide_score"] for i in sat]
        out["roc"][name] = (
            roc_auc_with_ci(labels, scores, n_boot=n_boot) if 0 < sum(labels) < len(labels) else None
        )
    names = [*INTERPRETATIONS, UNSATISFACTORY]
    out["confusion"] = confusion([r["truth"] for r in recs], counted, names)

    abnormal = [r for r in recs if r["truth"] != UNSATISFACTORY and r["planted_abnormal"]]
    few = [r for r in abnormal if r["few_cells"]]
    out["gallery"] = {
        subset: {
            str(k): gallery_hit_rate(
                [r["review_boxes"] for r in rows], [r["planted_abnormal"] for r in rows], k=k
            )
            for k in GALLERY_K
        }
        for subset, rows in (("abnormal slides", abnormal), ("1-5 abnormal cells", few))
    }
    eligible = [r for r in recs if not r["unsatisfactory"]]
    out["triage"] = triage_fraction(
        [r["slide_score"] for r in eligible], [r["label"] in CUTOFFS["HSIL+"] for r in eligible]
    )
    out["triage"]["of_all_slides"] = out["triage"]["set_aside"] / len(recs) if recs else None

    out["kinds"] = {}
    for kind in KINDS:
        rows = [(r, c) for r, c in zip(recs, counted, strict=True) if r["kind"] == kind.name]
        if not rows:
            continue
        if kind.group == "unsatisfactory":
            right = sum(r["unsatisfactory"] for r, _ in rows)
        elif kind.group == "negative":
            right = sum(c == "NILM" for _, c in rows)
        else:
            right = sum(c in CUTOFFS["ASC-US+"] for _, c in rows)
        out["kinds"][kind.name] = {
            "group": kind.group,
            "truth": kind.truth,
            **proportion(right, len(rows)),
            "calls": dict(Counter(c for _, c in rows)),
            "flagged_unsatisfactory": sum(r["unsatisfactory"] for r, _ in rows),
            "squamous_cells_median": _median(r["adequacy"].get("squamous_cells") for r, _ in rows),
        }
    return out


def _median(values: Any) -> float | None:
    """Median of the values that are numbers (None when there are none)."""
    numbers = [v for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def cost(recs: Sequence[dict[str, Any]], wall: float, screened: int) -> dict[str, Any]:
    """Seconds per slide (the engine's timings), slides per hour, review items per slide."""
    seconds = [r["seconds"] for r in recs if not r["failed"]]
    stages = sorted({k for r in recs for k in r["timings"]})
    items = [r["review_items"] for r in recs]
    mean = statistics.fmean(seconds) if seconds else None
    return {
        "seconds_per_slide": {
            "mean": mean,
            "median": statistics.median(seconds) if seconds else None,
            "max": max(seconds) if seconds else None,
        },
        "slides_per_hour": 3600.0 / mean if mean else None,
        "stage_means": {k: statistics.fmean(float(r["timings"].get(k, 0.0)) for r in recs) for k in stages},
        "this_run": {"screened": screened, "wall_seconds": wall},
        "review_items_per_slide": {
            "mean": statistics.fmean(items) if items else None,
            "median": statistics.median(items) if items else None,
            "max": max(items) if items else None,
        },
    }


# ------------------------------------------------------------------------------------------------ outputs
def pct(p: dict[str, Any]) -> str:
    """``"95.1 % (39/41; 83.9-98.7)"`` from a proportion record."""
    if p["value"] is None:
        return f"n/a (0/{p['n']})"
    low, high = p["interval"]
    return f"{100 * p['value']:.1f} % ({p['k']}/{p['n']}; {100 * low:.1f}-{100 * high:.1f})"


def plot_roc_curves(recs: Sequence[dict[str, Any]], figs: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from cytolt.evaluate.slide import roc_curve

    sat = [r for r in recs if r["truth"] != UNSATISFACTORY]
    fig = Figure(figsize=(4.8, 4.8))
    ax = fig.add_subplot()
    for name, roc in figs["roc"].items():
        if roc is None:
            continue
        fpr, tpr, _ = roc_curve([r["truth"] in CUTOFFS[name] for r in sat], [r["slide_score"] for r in sat])
        low, high = roc["interval"]
        ax.plot(fpr, tpr, lw=2, label=f"{name}: AUC {roc['auc']:.3f} ({low:.3f}-{high:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("slide score, satisfactory test slides")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_kinds(figs: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    colors = {"negative": "tab:blue", "abnormal": "tab:red", "unsatisfactory": "tab:grey"}
    asks = {
        "negative": "called NILM",
        "abnormal": "called ASC-US+",
        "unsatisfactory": "called unsatisfactory",
    }
    kinds = list(figs["kinds"].items())
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for x, (_, k) in enumerate(kinds):
        value = k["value"] or 0.0
        low, high = k["interval"]
        ax.bar(x, value, color=colors[k["group"]])
        ax.errorbar(x, value, yerr=[[value - low], [high - value]], color="black", capsize=3, lw=1)
    ax.set_xticks(
        range(len(kinds)), [f"{n} ({k['n']})" for n, k in kinds], rotation=40, ha="right", fontsize=8
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of the kind's slides (Wilson 95 %)")
    for group, color in colors.items():
        ax.bar([0], [0], color=color, label=asks[group])
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.suptitle("per slide kind: the share called as its truth asks", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_markdown(path: Path, study: dict[str, Any]) -> None:
    figs, setup, c = study["figures"], study["setup"], study["cost"]
    cut = figs["cutoffs"]
    adequacy = figs["adequacy"]
    lines = [
        "# Screening study on synthetic TCT",
        "",
        f"Run on {setup['date']}: {setup['machine']}, {setup['cores']} cores, {setup['threads']} torch threads, "
        f"device {setup['device']}, torch {setup['torch']}. Command: `{setup['command']}`.",
        "",
    ]
    if not setup["default"]:
        lines += [
            "**Not the study's default run** (cohort or slide size changed): these are not the figures to quote.",
            "",
        ]
    lines += [
        f"Slides: {setup['test_slides']} test and {setup['calibration_slides']} calibration slides of "
        f"{setup['slide_size']} x {setup['slide_size']} px at {MPP} um/px "
        f"({setup['slide_size'] * MPP / 1000:.2f} mm square), generic tiled TIFF from `cytolt.synth.make_slide`, "
        f"seeds {TEST_SEED}+ (test) and {CALIBRATION_SEED}+ (calibration). Model: `{setup['model']}` "
        f"(copied; its slide scorer fit on the calibration cohort only: "
        f"{100 * setup['calibration']['accuracy']:.0f} % of calibration slides called right after the fit, "
        f"{100 * setup['calibration']['accuracy_before']:.0f} % with the default thresholds).",
        "",
    ]
    stage = setup.get("second_stage")
    if stage:
        per_slide = [r["second_stage"] for r in study["slides"] if r.get("second_stage")]
        seconds = _median(s.get("seconds") for s in per_slide)
        lines += [
            f"Second stage: the cell classifier `{stage['classifier']}` re-scored the top {stage['top_n']} cells "
            f"of each slide (combine `{stage['combine']}`), both cohorts"
            + (f"; median {seconds:.2f} s per slide" if seconds is not None else "")
            + ".",
            "",
        ]
    lines += [
        "Adequacy rules after the fit: "
        + (
            ", ".join(f"`{k}` {v}" for k, v in (setup["calibration"]["adequacy_rules"] or {}).items())
            or "none"
        )
        + ".",
        "",
        "Intervals are 95 %: Wilson score intervals for proportions, a percentile bootstrap over slides "
        f"({setup['n_boot']} resamples) for the AUC. Cells give `value (k/n; low-high)`.",
        "",
        "## Cohort",
        "",
        "| slide kind | truth | test | calibration |",
        "| --- | --- | --- | --- |",
    ]
    for kind in KINDS:
        n_test = setup["kinds_test"].get(kind.name, 0)
        n_cal = setup["kinds_calibration"].get(kind.name, 0)
        if n_test or n_cal:
            lines.append(f"| {kind.name} | {kind.truth} | {n_test} | {n_cal} |")
    lines += [
        "",
        "## Adequacy",
        "",
        "| | |",
        "| --- | --- |",
        f"| unsatisfactory slides called unsatisfactory | {pct(adequacy['sensitivity'])} |",
        f"| satisfactory slides not flagged | {pct(adequacy['specificity'])} |",
    ]
    listed = adequacy["abnormal_cells_listed_on_unsatisfactory"]
    lines.append(
        f"| unsatisfactory slides with planted abnormal cells that listed abnormal cells | {pct(listed)} |"
    )
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(adequacy["reasons"].items())) or "none given"
    lines += ["", f"Reasons given on slides called unsatisfactory (slides per reason): {reasons}.", ""]
    lines += [
        "## Sensitivity and specificity",
        "",
        f"On the {cut['n']} test slides whose truth is satisfactory ({cut['excluded_unsatisfactory']} "
        "unsatisfactory ones left out). A slide called unsatisfactory counts as negative unless it listed "
        "abnormal cells (then as their interpretation).",
        "",
        "| cut-off | positive interpretations | sensitivity | specificity |",
        "| --- | --- | --- | --- |",
    ]
    for name in CUTOFFS:
        members = ", ".join(i for i in INTERPRETATIONS if i in CUTOFFS[name])
        lines.append(
            f"| {name} | {members} | {pct(cut[name]['sensitivity'])} | {pct(cut[name]['specificity'])} |"
        )
    lines += ["", "| ROC on the slide score | AUC | positives / negatives |", "| --- | --- | --- |"]
    for name, roc in figs["roc"].items():
        if roc is None:
            lines.append(f"| {name} | n/a (one class only) | |")
        else:
            low, high = roc["interval"]
            lines.append(
                f"| {name} | {roc['auc']:.3f} ({low:.3f}-{high:.3f}) | {roc['n_positive']} / {roc['n_negative']} |"
            )
    lines += [
        "",
        "![ROC curves](screening_roc.png)",
        "",
        "## Interpretations: truth (rows) against call (columns)",
        "",
    ]
    conf = figs["confusion"]
    lines += [
        "| truth \\ call | " + " | ".join(conf["columns"]) + " |",
        "| --- |" + " --- |" * len(conf["columns"]),
    ]
    for name, row in zip(conf["rows"], conf["matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) if v else "." for v in row) + " |")
    lines += [
        "",
        "## Gallery hit rate",
        "",
        "Share of abnormal slides (satisfactory truth, planted abnormal cells) with at least one planted abnormal "
        "cell (IoU >= 0.5) among the first k cells of the review queue (`cytolt.review.ReviewQueue`, the order a "
        "reviewer sees).",
        "",
        "| slides | " + " | ".join(f"first {k}" for k in GALLERY_K) + " |",
        "| --- |" + " --- |" * len(GALLERY_K),
    ]
    for subset, by_k in figs["gallery"].items():
        lines.append(f"| {subset} | " + " | ".join(pct(by_k[str(k)]) for k in GALLERY_K) + " |")
    tri = figs["triage"]
    frac = "n/a" if tri["fraction"] is None else f"{100 * tri['fraction']:.1f} %"
    lines += [
        "",
        "## Triage",
        "",
        f"Ranked by slide score, {frac} of the slides not called unsatisfactory ({tri['set_aside']}/{tri['n']}; "
        f"{100 * (tri['of_all_slides'] or 0):.1f} % of all test slides) score below every HSIL+ slide and could be "
        "set aside without missing one (a tie with the lowest HSIL+ slide is not set aside).",
        "",
        "## Cost",
        "",
        "| | |",
        "| --- | --- |",
    ]
    sps = c["seconds_per_slide"]
    if sps["mean"] is not None:
        lines += [
            f"| seconds per slide (engine total: mean / median / max) | {sps['mean']:.2f} / {sps['median']:.2f} / {sps['max']:.2f} |",
            f"| slides per hour, one process | {c['slides_per_hour']:.0f} |",
        ]
    lines.append(
        "| mean seconds per stage | " + ", ".join(f"{k} {v:.2f}" for k, v in c["stage_means"].items()) + " |"
    )
    items = c["review_items_per_slide"]
    if items["mean"] is not None:
        lines.append(
            f"| review items per slide (mean / median / max) | {items['mean']:.1f} / {items['median']:.0f} / {items['max']} |"
        )
    lines += [
        f"| slide generation, seconds per slide (this run) | {study['generation_seconds_per_slide']} |",
        f"| scorer fit on the calibration cohort | {setup['calibration']['seconds'] / 60:.1f} min |",
        f"| this run: slides screened / wall time | {c['this_run']['screened']} / {c['this_run']['wall_seconds'] / 60:.1f} min |",
        f"| whole study, this run | {study['total_seconds'] / 60:.1f} min |",
        "",
        "## Per slide kind",
        "",
        "![per kind](screening_kinds.png)",
        "",
        "| slide kind | asks | share | calls | squamous cells counted (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    asks = {
        "negative": "called NILM",
        "abnormal": "called ASC-US+",
        "unsatisfactory": "called unsatisfactory",
    }
    for name, k in figs["kinds"].items():
        calls = ", ".join(f"{call} {n}" for call, n in sorted(k["calls"].items(), key=lambda kv: -kv[1]))
        squamous = "n/a" if k["squamous_cells_median"] is None else f"{k['squamous_cells_median']:g}"
        lines.append(f"| {name} | {asks[k['group']]} | {pct(k)} | {calls} | {squamous} |")
    lines += [
        "",
        "## Published figures to compare with",
        "",
        *[f"- {p}" for p in PUBLISHED],
        "",
        "This run, stated without judgement: at ASC-US+ sensitivity "
        f"{pct(cut['ASC-US+']['sensitivity'])} and specificity {pct(cut['ASC-US+']['specificity'])}; at HSIL+ "
        f"sensitivity {pct(cut['HSIL+']['sensitivity'])} and specificity {pct(cut['HSIL+']['specificity'])}.",
        "",
        "## Reading",
        "",
        *_reading(path.parent),
        "",
        "## How the calls were read",
        "",
        "From each slide's `report.json`: `status`, `error`, `score.category`, `score.slide_score`, `score.counts`, "
        "`adequacy.status` and `adequacy.reasons` (else `score.adequacy`), `interpretation.bethesda`, `timings`; "
        "from `run.sqlite` the review queue. Interpretations came from: "
        + ", ".join(f"{k} ({v} slides)" for k, v in sorted(figs["interpretation_from"].items()))
        + f". Slides that failed to screen: {figs['failed']} (counted as unsatisfactory without abnormal cells).",
        "",
    ]
    path.write_text("\n".join(lines))


def machine(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    import torch

    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "command": " ".join(["python", "scripts/screening_study.py", *argv]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    import torch

    from cytolt.screen import ScreenSettings

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    work = args.work_root / f"{args.slide_size}px"
    test = cohort(work / "test_slides", args.test_slides, calibration=False)
    calib = cohort(work / "calibration_slides", args.calibration_slides, calibration=True)
    assert not {s.seed for s in test} & {s.seed for s in calib}, "calibration and test cohorts share a seed"
    check_generator([*test, *calib])

    times_file = work / "generation_seconds.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    before = set(times)
    generate(calib, args.slide_size, times, quiet=args.quiet)
    generate(test, args.slide_size, times, quiet=args.quiet)
    times_file.write_text(json.dumps(times, indent=1))
    new_times = [v for k, v in times.items() if k not in before]

    stage: dict[str, Any] = {}
    if args.classifier is not None:
        stage = {"classifier": args.classifier, "classifier_combine": args.classifier_combine}
        if args.classifier_top_n is not None:
            stage["classifier_top_n"] = args.classifier_top_n
    settings = ScreenSettings(device=args.device, read_threads=args.read_threads, html=args.html, **stage)
    # a run folder per second stage, so the runs with and without one are both kept (and resumable)
    tag = (
        ""
        if settings.classifier is None
        else f"_{slug(Path(settings.classifier).name)}_{settings.classifier_top_n}_{settings.classifier_combine}"
    )
    source = source_model(args)
    model = model_copy(source, work / "model")
    fit = calibrate(model, calib, work / f"calibration_run{tag}", dataclasses.replace(settings, html=False))
    summary, wall = screen(model, test, work / f"test_run{tag}", settings, quiet=args.quiet)
    recs = records(test, summary)
    figs = figures(recs, n_boot=args.n_boot)
    study = {
        "setup": {
            **machine(args, argv),
            "default": is_default(args),
            "test_slides": len(test),
            "calibration_slides": len(calib),
            "slide_size": args.slide_size,
            "mpp": MPP,
            "model": str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source),
            "calibration": {k: fit[k] for k in ("accuracy", "accuracy_before", "seconds", "adequacy_rules")},
            "n_boot": args.n_boot,
            "second_stage": None
            if settings.classifier is None
            else {
                "classifier": str(args.classifier),
                "identity": settings.classifier_identity,
                "top_n": settings.classifier_top_n,
                "combine": settings.classifier_combine,
            },
            "kinds_test": dict(Counter(s.kind.name for s in test)),
            "kinds_calibration": dict(Counter(s.kind.name for s in calib)),
        },
        "figures": figs,
        "cost": cost(recs, wall, len(summary.results) - len(summary.resumed)),
        "generation_seconds_per_slide": round(statistics.fmean(new_times), 2) if new_times else "all reused",
        "total_seconds": time.perf_counter() - started,
        "scorer_fit": fit,
        "slides": recs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "screening.json").write_text(json.dumps(study, indent=1, default=str) + "\n")
    plot_roc_curves(recs, figs, args.out / "screening_roc.png")
    plot_kinds(figs, args.out / "screening_kinds.png")
    write_markdown(args.out / "screening.md", study)
    cut = figs["cutoffs"]
    print(
        f"{len(test)} test slides: ASC-US+ sensitivity {pct(cut['ASC-US+']['sensitivity'])}, specificity "
        f"{pct(cut['ASC-US+']['specificity'])}; HSIL+ sensitivity {pct(cut['HSIL+']['sensitivity'])}; "
        f"{study['total_seconds'] / 60:.1f} min -> {args.out / 'screening.md'}"
    )
    return study


if __name__ == "__main__":
    main()
