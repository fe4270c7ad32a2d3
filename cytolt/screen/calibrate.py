"""Fit a model's slide scorer on labelled slides and keep it beside the model as ``scorer.json``.

The default scorer calls a slide abnormal when one cell of an abnormal class passes 0.5. A detector trained on
a few hundred patches rarely puts its scores where 0.5 means "more likely than not", so the thresholds are
chosen on slides whose category is known (:meth:`cytolt.aggregate.SlideScorer.fit`): screen them, fit, save.
:func:`cytolt.screen.screen_slides` then picks ``<model>/scorer.json`` up on its own.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytolt import bethesda
from cytolt.adequacy import MIN_SQUAMOUS_FRACTION
from cytolt.aggregate import SlideScorer
from cytolt.detect.model_folder import ModelFolder
from cytolt.screen.batch import screen_slides
from cytolt.screen.engine import SlideResult, default_scorer
from cytolt.screen.settings import ScreenSettings

__all__ = ["BETHESDA_CATEGORIES", "MIN_SQUAMOUS_FRACTION", "ScorerFit", "category_for", "fit_slide_scorer"]


# Bethesda slide labels (cytolt.synth.SLIDE_LABELS, DOMAIN.md) -> the default scorer's triage categories
# (cytolt.bethesda.triage_call: ASC-H and AGC are abnormal but not HSIL+, so they land in ASC-US+).
BETHESDA_CATEGORIES: dict[str, str] = {i: bethesda.triage_call(i) for i in bethesda.INTERPRETATIONS}


@dataclass(frozen=True)
class ScorerFit:
    """What :func:`fit_slide_scorer` did.

    Attributes:
        scorer: the fitted scorer (also saved to ``path`` unless ``save=False``).
        report: per abnormal class, what :meth:`SlideScorer.fit` chose (threshold, sensitivity, specificity)
            or why it kept the old threshold.
        slides, categories: the labelled slides and their categories, in input order.
        calls_before, calls_after: each slide's call with the default thresholds and with the fitted ones.
        path: where the scorer was written, None when not saved.
        squamous_cells: each slide's well-visualised squamous cells (fitted thresholds); the scorer's adequacy
            minimum is ``MIN_SQUAMOUS_FRACTION`` of their median.
    """

    scorer: SlideScorer
    report: dict[str, dict[str, Any]]
    slides: list[Path]
    categories: list[str]
    calls_before: list[str]
    calls_after: list[str]
    path: Path | None
    squamous_cells: list[int] = dataclasses.field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Fraction of the labelled slides whose fitted call equals their category (on the fitting slides)."""
        return _agreement(self.calls_after, self.categories)

    @property
    def accuracy_before(self) -> float:
        """The same fraction with the default thresholds."""
        return _agreement(self.calls_before, self.categories)


def _agreement(calls: Sequence[str], truth: Sequence[str]) -> float:
    return sum(a == b for a, b in zip(calls, truth, strict=True)) / max(len(truth), 1)


def category_for(label: str, scorer: SlideScorer) -> str:
    """The scorer category of a slide label: a category itself, or a Bethesda label mapped by
    :data:`BETHESDA_CATEGORIES`. ValueError for anything else."""
    if label in scorer.categories:
        return label
    mapped = BETHESDA_CATEGORIES.get(label)
    if mapped in scorer.categories:
        return mapped
    raise ValueError(
        f"slide label {label!r} is neither a category ({', '.join(scorer.categories)}) "
        f"nor a Bethesda label ({', '.join(BETHESDA_CATEGORIES)})"
    )


def fit_slide_scorer(
    slides: Sequence[str | os.PathLike[str]],
    labels: Sequence[str],
    model_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    min_specificity: float | None = 1.0,
    target_sensitivity: float | None = None,
    save: bool = True,
    settings: ScreenSettings | None = None,
) -> ScorerFit:
    """Screen labelled ``slides`` with the model in ``model_dir``, fit per-class thresholds and the adequacy
    minimum of squamous cells (``MIN_SQUAMOUS_FRACTION`` of the slides' median), save ``scorer.json``.

    Args:
        slides: slide files with known categories; they should hold both normal and abnormal slides.
        labels: one per slide, a scorer category (``"NILM"``, ``"ASC-US+"``, ``"HSIL+"``) or a Bethesda label.
        model_dir: an exported model folder; ``<model_dir>/scorer.json`` is (over)written when ``save``.
        run_dir: run folder for screening the labelled slides (store and reports, kept for inspection).
        min_specificity: per class, the threshold of highest sensitivity whose specificity on these slides is
            at least this (see :meth:`SlideScorer.fit`). The default 1.0 keeps every labelled negative slide
            negative, also for the category rules as a whole; per-class Youden thresholds (None) add their
            false positives up once the rules OR the classes.
        target_sensitivity: instead, the highest threshold reaching this sensitivity (min_specificity is then
            ignored). Both None: maximise Youden's J.
        settings: how the slides are screened (:func:`~cytolt.screen.screen_slides`, in this process).

    Raises:
        ValueError: lengths differ, an unknown label, or a slide that could not be screened (named).
    """
    if len(slides) != len(labels):
        raise ValueError(f"got {len(slides)} slides and {len(labels)} labels")
    model = ModelFolder.read(model_dir)
    info = model.info
    scorer = default_scorer(info)
    if scorer is None:
        raise ValueError(
            f"{model.path}: the model has no abnormal classes to call a slide with ({info.classes})"
        )
    categories = [category_for(str(lab), scorer) for lab in labels]
    # The default scorer, not an existing scorer.json, so that a refit starts from the same place.
    settings = dataclasses.replace(settings or ScreenSettings(), html=False)
    summary = screen_slides(slides, model, run_dir, settings, scorer=scorer)
    failed = [f"{r.path}: {r.error}" for r in summary.failed]
    if failed:
        raise ValueError("cannot fit the slide scorer; these slides failed:\n  " + "\n  ".join(failed))
    detections = [r.detections for r in summary.results]
    before = [scorer.score(d).category for d in detections]
    report = scorer.fit(
        detections,
        categories,
        target_sensitivity=target_sensitivity,
        min_specificity=None if target_sensitivity is not None else min_specificity,
    )
    after = [scorer.score(d).category for d in detections]
    squamous = [_squamous_cells(scorer, r) for r in summary.results]
    minimum = int(MIN_SQUAMOUS_FRACTION * float(np.median(squamous)))
    scorer.adequacy = dataclasses.replace(scorer.adequacy, min_squamous_cells=minimum)
    path = model.write_scorer(scorer) if save else None
    return ScorerFit(
        scorer=scorer,
        report=report,
        slides=[r.path for r in summary.results],
        categories=categories,
        calls_before=before,
        calls_after=after,
        path=path,
        squamous_cells=squamous,
    )


def _squamous_cells(scorer: SlideScorer, result: SlideResult) -> int:
    stage = result.second_stage  # adequacy counts the detector's cells, never the classifier's relabelling
    seen = None if stage is None else stage.detector_cells(result.detections)
    adequacy = scorer.score(result.detections, result.quality, adequacy_dets=seen).adequacy
    assert adequacy is not None  # judged, since a quality was given
    return adequacy.squamous_cells
