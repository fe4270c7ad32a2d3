"""The second stage of screening: the detector's most suspicious cells re-scored by a cell classifier on crops.

    stage = SecondStage.from_folder("models/cells", top_n=200, combine="replace")
    cells, rescored = rescore_cells(slide, cells, class_names, stage, scorer=scorer)

Published screening systems look twice at the candidates a first model ranks highest: Cheng et al., "Robust whole
slide image analysis for cervical cancer screening using deep learning", Nature Communications 12, 5639 (2021),
re-score the most suspicious regions of a slide with a second model at a higher resolution before the slide call.
cytolt adapts the idea to its own pipeline: the first model is the detector (after the cross-tile merge and
:func:`~cytolt.screen.cells.group_cells`), the second a crop classifier (:mod:`cytolt.classify`) that sees each
candidate cell with its surroundings at the classifier's own mpp; the slide call stays cytolt's top-k pooling
(:mod:`cytolt.aggregate`) over the combined scores, not the paper's recurrent network.

Glossary (N cells of one slide, C detector classes, K classifier classes, M = min(N, top_n) re-scored cells):

- *candidates*: the cells in order of their abnormal probability as the slide scorer defines it (the scorer's
  calibrated ``P``; ``max`` over the abnormal classes for sigmoid scores, their clipped ``sum`` for softmax),
  ties broken by the cell's largest class probability, then by the detector's order. Without a scorer the
  abnormal classes are the Bethesda ones (:data:`cytolt.bethesda.ABNORMAL`), sigmoid scores. The first
  ``top_n`` are re-scored; the others keep the detector's scores.
- *class map*: the classifier's K classes must be the detector's C classes by name (any order; K == C); its
  probabilities are reordered into the detector's order. Anything else is a ValueError naming the classes,
  raised by :meth:`SecondStage.class_map` before any slide is read.
- *combine*: ``"replace"``: the classifier's probabilities become the cell's ``class_scores``; ``"mean"``: the
  arithmetic mean of the detector's and the classifier's. Arithmetic, not geometric: a detector without
  per-class scores gives one-hot rows (zeros elsewhere) and sigmoid detectors give near-zero scores to the
  classes they did not fire, and a geometric mean is 0 wherever either factor is, so the classifier could never
  move a cell to another class; the arithmetic mean also stays a probability in [0, 1]. The cell's label and
  score follow from the new row (``argmax``, ``max``), and the cells are sorted by score again.
- *both scores*: :class:`Rescored` keeps, for each re-scored cell, the detector's row and the classifier's row
  (both (M, C), detector order, before any calibration), so the report can show both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from cytolt import bethesda
from cytolt.detect.types import Detections
from cytolt.screen.cells import class_probabilities
from cytolt.screen.settings import COMBINE_METHODS, DEFAULT_TOP_N, class_map

if TYPE_CHECKING:
    from cytolt.aggregate import SlideScorer
    from cytolt.io import Slide
    from cytolt.screen.settings import ScreenSettings

__all__ = [
    "COMBINE_METHODS",
    "DEFAULT_TOP_N",
    "CellClassifier",
    "Rescored",
    "SecondStage",
    "candidate_order",
    "class_map",
    "combine_scores",
    "load_second_stage",
    "rescore_cells",
]

_PROB_TOL = 1e-4  # float error past [0, 1] accepted from a classifier's probabilities (then clipped)


class CellClassifier(Protocol):
    """What the second stage needs of a classifier (:class:`cytolt.classify.predict.CropClassifier` is one).

    ``predict_boxes(slide, boxes)``: boxes (M, 4) float xyxy level-0 px of an open slide -> (M, K) float
    probabilities in ``class_names`` order, read at the classifier's ``mpp``, ``crop_size`` and ``context``.
    """

    class_names: tuple[str, ...]
    mpp: float
    crop_size: int
    context: float

    def predict_boxes(self, slide: Slide, boxes_level0: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True)
class SecondStage:
    """A classifier and how it re-scores a slide's cells (see the module glossary).

    Attributes:
        classifier: the classifier (:class:`CellClassifier`).
        top_n: candidate cells re-scored per slide.
        combine: one of ``COMBINE_METHODS``.
        name: what reports call the classifier (its folder's name).
        identity: its folder's identity (``"sha256:..."``), for reports and ``--resume``; None for an object
            that has no folder (its reports say so and resume cannot tell two such classifiers apart).
    """

    classifier: CellClassifier
    top_n: int = DEFAULT_TOP_N
    combine: str = "replace"
    name: str | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.top_n, bool) or not isinstance(self.top_n, int) or self.top_n < 1:
            raise ValueError(f"top_n must be an integer >= 1; got {self.top_n!r}")
        if self.combine not in COMBINE_METHODS:
            choices = ", ".join(map(repr, COMBINE_METHODS))
            raise ValueError(f"combine must be one of {choices}; got {self.combine!r}")

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        *,
        top_n: int = DEFAULT_TOP_N,
        combine: str = "replace",
        device: str | torch.device | None = None,
    ) -> SecondStage:
        """The classifier of a model folder (``cytolt classify train``) on ``device`` (default: CUDA if any)."""
        from cytolt.classify.predict import CropClassifier

        classifier = CropClassifier.from_folder(path, device=_device(device))
        return cls(
            classifier=classifier,
            top_n=top_n,
            combine=combine,
            name=Path(path).absolute().name,
            identity=classifier.identity,
        )

    def class_map(self, class_names: Sequence[str]) -> np.ndarray:
        """(C,) int64: the classifier column of each detector class; ValueError unless the names match."""
        return class_map(class_names, self.classifier.class_names, where=self.name or "the classifier")

    def describe(self) -> dict[str, Any]:
        """The stage as plain data (report.json's ``second_stage`` block without the per-slide fields)."""
        c = self.classifier
        return {
            "classifier": {
                "name": self.name,
                "identity": self.identity,
                "classes": list(c.class_names),
                "mpp": float(c.mpp),
                "crop_size": int(c.crop_size),
                "context": float(c.context),
            },
            "top_n": self.top_n,
            "combine": self.combine,
        }


@dataclass(frozen=True, kw_only=True)
class Rescored:
    """What the second stage did to one slide's cells (see the module glossary).

    Attributes:
        indices: (M,) int64 rows of the re-scored cells in the returned Detections, in candidate order.
        detector_scores: (M, C) float32 the detector's class probabilities of those cells.
        classifier_scores: (M, C) float32 the classifier's, reordered into the detector's classes.
        stage: :meth:`SecondStage.describe` of the stage that ran.
    """

    indices: np.ndarray
    detector_scores: np.ndarray
    classifier_scores: np.ndarray
    stage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.indices)
        if self.detector_scores.shape[0] != m or self.classifier_scores.shape != self.detector_scores.shape:
            raise ValueError(
                f"Rescored: {m} indices, detector scores {self.detector_scores.shape}, classifier scores "
                f"{self.classifier_scores.shape}"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def detector_cells(self, cells: Detections) -> Detections:
        """``cells`` (the re-scored ones) with the detector's own class probabilities, labels and scores put back
        on the re-scored rows: what adequacy counts, so that the classifier never changes an adequacy call."""
        if not len(self):
            return cells
        P = class_probabilities(cells, self.detector_scores.shape[1]).copy()
        labels = cells.labels.cpu().numpy().copy()
        scores = cells.scores.double().cpu().numpy().copy()
        P[self.indices] = self.detector_scores
        labels[self.indices] = self.detector_scores.argmax(axis=1)
        scores[self.indices] = self.detector_scores.max(axis=1)
        return Detections(
            boxes=cells.boxes.cpu(),
            scores=torch.from_numpy(scores).float(),
            labels=torch.from_numpy(labels).long(),
            class_scores=torch.from_numpy(P).float(),
        ).to(cells.device)

    def rows(self) -> dict[int, int]:
        """Detection row -> position in these arrays."""
        return {int(r): j for j, r in enumerate(self.indices)}

    def labels_changed(self) -> int:
        """Re-scored cells whose most probable class differs between detector and classifier."""
        if not len(self):
            return 0
        return int((self.detector_scores.argmax(1) != self.classifier_scores.argmax(1)).sum())

    def to_dict(self, keys: Sequence[str], *, seconds: float | None = None) -> dict[str, Any]:
        """report.json's ``second_stage`` block; ``keys[r]`` is the detection key of row ``r``."""
        return {
            **self.stage,
            "cells_rescored": len(self),
            "labels_changed": self.labels_changed(),
            "seconds": None if seconds is None else round(float(seconds), 6),
            "cells": [
                {
                    "key": keys[int(r)],
                    "detector": _rounded(self.detector_scores[j]),
                    "classifier": _rounded(self.classifier_scores[j]),
                }
                for j, r in enumerate(self.indices)
            ],
        }

    @classmethod
    def from_dict(cls, block: Mapping[str, Any], keys: Sequence[str]) -> Rescored:
        """The inverse of :meth:`to_dict` for the detections whose keys are ``keys`` (a resumed slide).

        Raises ValueError when a cell's key is not among ``keys`` or the block is malformed.
        """
        row = {k: i for i, k in enumerate(keys)}
        try:
            cells = list(block["cells"])
            missing = [c["key"] for c in cells if c["key"] not in row]
            if missing:
                raise ValueError(f"re-scored cells {missing[:3]} are not among the slide's detections")
            indices = np.array([row[c["key"]] for c in cells], dtype=np.int64)
            width = len(block["classifier"]["classes"])
            det = np.array([c["detector"] for c in cells], dtype=np.float32).reshape(-1, width)
            cls_ = np.array([c["classifier"] for c in cells], dtype=np.float32).reshape(-1, width)
            stage = {k: block[k] for k in ("classifier", "top_n", "combine")}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed second_stage block: {exc!r}") from None
        return cls(indices=indices, detector_scores=det, classifier_scores=cls_, stage=stage)


def candidate_order(abnormal: np.ndarray, best: np.ndarray) -> np.ndarray:
    """(N,) int64 cell indices by descending ``abnormal`` probability, then descending ``best`` class
    probability, then index (both (N,))."""
    # lexsort sorts by the last key first and is stable, so equal keys keep the detector's order
    return np.lexsort((-np.asarray(best, np.float64), -np.asarray(abnormal, np.float64))).astype(np.int64)


def combine_scores(detector: np.ndarray, classifier: np.ndarray, method: str) -> np.ndarray:
    """(M, C) combined class probabilities of detector (M, C) and classifier (M, C) rows (module glossary)."""
    if method == "replace":
        return np.array(classifier, dtype=np.float64)
    if method == "mean":
        return (np.asarray(detector, np.float64) + np.asarray(classifier, np.float64)) / 2.0
    raise ValueError(f"combine must be one of {', '.join(map(repr, COMBINE_METHODS))}; got {method!r}")


def rescore_cells(
    slide: Slide,
    cells: Detections,
    class_names: Sequence[str],
    stage: SecondStage,
    *,
    scorer: SlideScorer | None = None,
) -> tuple[Detections, Rescored]:
    """Re-score the top ``stage.top_n`` candidate cells of a slide with ``stage.classifier``.

    Args:
        slide: the open slide the cells were found on (crops are read from it).
        cells: one detection per cell (:func:`~cytolt.screen.cells.group_cells`), boxes level-0 px.
        class_names: the detector's C classes, in label order.
        stage: the classifier and how to combine.
        scorer: the slide scorer whose abnormal probability ranks the candidates (module glossary).

    Returns:
        ``(cells, rescored)``: the cells with the re-scored ones' ``class_scores``, labels and scores replaced,
        sorted by descending score, and what was done (:class:`Rescored`, rows into the returned cells).

    Raises:
        ValueError: the class tables differ (before the slide is read), or the classifier returns the wrong
            shape or values that are not probabilities.
    """
    columns = stage.class_map(class_names)
    C = len(class_names)
    P = class_probabilities(cells, C)
    top = candidate_order(_abnormal_probability(cells, class_names, scorer), P.max(axis=1, initial=0.0))
    top = top[: stage.top_n]
    if len(top):
        boxes = cells.boxes.double().cpu().numpy()[top]
        raw = np.asarray(stage.classifier.predict_boxes(slide, boxes))
        Q = _check_probabilities(raw, len(top), len(columns), stage.name)[:, columns]
    else:
        Q = np.zeros((0, C))
    new = P.copy()
    new[top] = combine_scores(P[top], Q, stage.combine)
    labels = cells.labels.cpu().numpy().copy()
    scores = cells.scores.double().cpu().numpy().copy()
    if len(top):
        labels[top] = new[top].argmax(axis=1)
        scores[top] = new[top, labels[top]]
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    out = Detections(
        boxes=cells.boxes.cpu()[torch.from_numpy(order)],
        scores=torch.from_numpy(scores[order]).float(),
        labels=torch.from_numpy(labels[order]).long(),
        class_scores=torch.from_numpy(new[order]).float(),
    ).to(cells.device)
    rescored = Rescored(
        indices=rank[top],
        detector_scores=P[top].astype(np.float32),
        classifier_scores=Q.astype(np.float32),
        stage=stage.describe(),
    )
    return out, rescored


def _abnormal_probability(
    cells: Detections, class_names: Sequence[str], scorer: SlideScorer | None
) -> np.ndarray:
    """(N,) each cell's abnormal probability as the slide scorer computes it (module glossary)."""
    from cytolt.aggregate import SlideScorer

    if scorer is None:
        abnormal = bethesda.classes_in(class_names, bethesda.ABNORMAL)
        if not abnormal:
            return np.zeros(len(cells))
        scorer = SlideScorer(class_names=class_names, abnormal_classes=abnormal)
    # The scorer's own definition (sum or max by score type, after its calibration), not a copy of it: the
    # candidates are the cells the slide score would be built from.
    return scorer._abnormal(scorer.probabilities(cells))


def _check_probabilities(raw: np.ndarray, m: int, k: int, name: str | None) -> np.ndarray:
    where = name or "the classifier"
    if raw.shape != (m, k):
        raise ValueError(f"{where} returned probabilities of shape {raw.shape} for {m} crops and {k} classes")
    p = raw.astype(np.float64)
    if not np.isfinite(p).all() or p.min(initial=0.0) < -_PROB_TOL or p.max(initial=0.0) > 1 + _PROB_TOL:
        raise ValueError(f"{where} returned values that are not probabilities in [0, 1]")
    return np.clip(p, 0.0, 1.0)


def _rounded(row: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in row]


# One loaded classifier per process, keyed by (folder, identity, top_n, combine, device): a slide must not pay
# for loading it, and a Dask worker loads it once. A new key replaces it (one classifier per process at a time).
_LOADED: dict[tuple[Any, ...], SecondStage] = {}


def load_second_stage(
    settings: ScreenSettings, device: str | torch.device | None = None
) -> SecondStage | None:
    """The second stage ``settings`` ask for (``settings.classifier``), loaded once per process; None if none.

    ``device``: where the classifier runs when ``settings.device`` is None (the detector's device).
    """
    if settings.classifier is None:
        return None
    device = _device(settings.device if settings.device is not None else device)
    key = (
        settings.classifier,
        settings.classifier_identity,
        settings.classifier_top_n,
        settings.classifier_combine,
        device,
    )
    stage = _LOADED.get(key)
    if stage is None:
        stage = SecondStage.from_folder(
            settings.classifier,
            top_n=settings.classifier_top_n,
            combine=settings.classifier_combine,
            device=device,
        )
        _LOADED.clear()
        _LOADED[key] = stage
    return stage


def _device(device: str | torch.device | None) -> str:
    """A device as one string per device ("cuda" and the current "cuda:0" alike), None: CUDA when available."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return str(d)
