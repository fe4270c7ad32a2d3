"""Export a slide's detections from a :class:`DetectionStore`: QuPath GeoJSON, CSV and COCO results.

Exports carry boxes, classes, scores and review decisions only: never the slide path, its label/macro images
or description text, which can hold patient data (DOMAIN.md "Slide files"). Which detections are written is an
:class:`ExportSelection` (score, classes, reviews), applied the same way for every format.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytolt.store.geojson import DEFAULT_COLORS, detection_feature, detection_uuid, feature_collection
from cytolt.store.store import DetectionStore, Review, no_gc

__all__ = ["ExportSelection", "to_coco_results", "to_csv", "to_geojson"]


@dataclass(frozen=True, kw_only=True)
class ExportSelection:
    """Which detections an export writes; the default keeps every one.

    Attributes:
        min_score: keep ``score >= min_score`` (the model's score, 0-1).
        classes: keep only these class names (any collection; kept as a frozenset); a reclassified
            detection counts as its reviewed class.
        reviewed_only: keep only detections with a review (their latest one decides).
        rejected: keep detections whose latest review rejects them.
    """

    min_score: float = 0.0
    classes: frozenset[str] | None = None
    reviewed_only: bool = False
    rejected: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be a finite number; got {self.min_score!r}")
        if isinstance(self.classes, str):
            raise TypeError(f"classes must be a collection of class names, not the string {self.classes!r}")
        if self.classes is not None:
            object.__setattr__(self, "classes", frozenset(map(str, self.classes)))

    def check_classes(self, names: Sequence[str], where: str | os.PathLike[str]) -> None:
        """Raise ValueError (naming ``where``, e.g. the store) when ``classes`` names a class not in ``names``."""
        unknown = sorted(set(self.classes or ()) - set(names))
        if unknown:
            raise ValueError(f"{where}: no class {unknown} in this run; classes are {list(names)}")


ALL = ExportSelection()


@dataclass(frozen=True)
class _Selected:
    """A slide's detections after an :class:`ExportSelection`, as columns (score order), with their reviews.

    ``cols``: ``id, key, boxes (N, 4) level-0 xyxy, scores (N,), labels (N,)`` and ``class_scores (N, C)`` when
    stored; ``shown`` (N,) the label shown (reviewed if reclassified, else the model's); ``reviews`` the
    latest review per detection key; ``names`` the class names by label.
    """

    cols: dict[str, Any]
    shown: list[int]
    reviews: dict[str, Review]
    names: list[str]


def _class_names(store: DetectionStore, labels: Sequence[int]) -> list[str]:
    names = store.class_names
    top = max(labels, default=-1)
    return names + [f"class_{i}" for i in range(len(names), top + 1)]


def _latest_reviews(store: DetectionStore, slide_id: int) -> dict[str, Review]:
    return {r.detection_key: r for r in store.reviews(slide_id, latest=True) if r.detection_id is not None}


def _select(store: DetectionStore, slide_id: int, selection: ExportSelection | None) -> _Selected:
    """The one place an :class:`ExportSelection` is applied (every export goes through here)."""
    sel = ALL if selection is None else selection
    cols = store.columns(slide_id, min_score=sel.min_score)
    reviews = _latest_reviews(store, slide_id)
    labels = cols["labels"].tolist()
    shown = list(labels)
    for i, key in enumerate(cols["key"]):
        review = reviews.get(key)
        if review is not None and review.decision == "reclassify" and review.new_label is not None:
            shown[i] = int(review.new_label)
    names = _class_names(store, [*labels, *shown])
    sel.check_classes(names, store.path)
    keep = np.ones(len(labels), dtype=bool)
    for i, key in enumerate(cols["key"]):
        review = reviews.get(key)
        if sel.reviewed_only and review is None:
            keep[i] = False
        elif not sel.rejected and review is not None and review.decision == "reject":
            keep[i] = False
        elif sel.classes is not None and names[shown[i]] not in sel.classes:
            keep[i] = False
    if not keep.all():
        idx = np.flatnonzero(keep)
        cols = {k: [v[j] for j in idx] if isinstance(v, list) else v[idx] for k, v in cols.items()}
        shown = [shown[j] for j in idx]
    return _Selected(cols=cols, shown=shown, reviews=reviews, names=names)


def to_geojson(
    store: DetectionStore,
    slide_id: int,
    path: str | os.PathLike[str] | None,
    *,
    class_colors: Mapping[str, Sequence[int]] | None = None,
    selection: ExportSelection | None = None,
) -> dict[str, Any]:
    """Write a slide's detections as a QuPath GeoJSON FeatureCollection (also returned); ``path=None`` only returns.

    ``selection`` picks the detections (default: all). Each Feature: ``id`` = uuid5 of (slide content hash, or
    ``slide<id>`` without one) and the detection key, so re-exports give the same ids; a Polygon of the box in
    level-0 px; ``properties.objectType = "detection"``; ``classification`` = reviewed class if reclassified,
    else the model's, with its colour (``class_colors``, else Tableau 10 by label); ``measurements`` =
    ``score`` and ``p_<class>`` per-class scores when stored, plus ``review_accepted`` (1 accept / reclassify,
    0 reject) for reviewed ones; ``properties.review`` holds the latest decision, reviewer and time,
    ``properties.model_class`` the model's class; ``name`` reads ``"HSIL 0.93"`` (``" [reject]"``,
    ``" [reclassify to LSIL]"`` etc. appended once reviewed).
    """
    slide = store.slide(slide_id)
    sel = _select(store, slide_id, selection)
    names = sel.names
    colors = {n: DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i, n in enumerate(names)}
    if class_colors:
        unknown = sorted(set(class_colors) - set(names))
        if unknown:
            raise ValueError(f"class_colors names unknown classes {unknown}; classes are {names}")
        colors.update({k: tuple(int(c) for c in v) for k, v in class_colors.items()})
    slide_uid = slide.content_hash or f"slide{slide.id}"
    with no_gc():
        features = _features(sel, colors, slide_uid)
    doc = feature_collection(features)
    if path is not None:
        Path(path).write_text(json.dumps(doc))
    return doc


def _features(sel: _Selected, colors: Mapping[str, Sequence[int]], slide_uid: str) -> list[dict[str, Any]]:
    cols, names = sel.cols, sel.names
    labels = cols["labels"].tolist()
    class_scores = cols.get("class_scores")
    features = []
    for i, key in enumerate(cols["key"]):
        model_class = names[labels[i]]
        shown = names[sel.shown[i]]
        score = float(cols["scores"][i])
        measurements = {"score": score}
        if class_scores is not None:
            measurements.update({f"p_{n}": float(v) for n, v in zip(names, class_scores[i], strict=False)})
        extra: dict[str, Any] = {"model_class": model_class}
        name = f"{model_class} {score:.2f}"
        review = sel.reviews.get(key)
        if review is not None:
            measurements["review_accepted"] = 0.0 if review.decision == "reject" else 1.0
            extra["review"] = {
                "decision": review.decision,
                "class": shown,
                "reviewer": review.reviewer,
                "time": review.time,
            }
            name += f" [{review.decision}{' to ' + shown if review.decision == 'reclassify' else ''}]"
        features.append(
            detection_feature(
                feature_id=detection_uuid(slide_uid, key),
                box=cols["boxes"][i].tolist(),
                class_name=shown,
                color=colors[shown],
                measurements=measurements,
                name=name,
                extra=extra,
            )
        )
    return features


CSV_BASE_COLUMNS = (
    "slide_id",
    "detection_id",
    "key",
    "x0",
    "y0",
    "x1",
    "y1",
    "label",
    "class",
    "score",
)
CSV_REVIEW_COLUMNS = ("review_decision", "review_class", "reviewer", "review_time")


def to_csv(
    store: DetectionStore,
    slide_ids: int | Sequence[int] | None,
    path: str | os.PathLike[str],
    *,
    selection: ExportSelection | None = None,
) -> int:
    """Write detections of one slide, several, or all (``None``) as CSV; returns the number of rows.

    ``selection`` picks the detections (default: all). Columns: ``CSV_BASE_COLUMNS`` (``label``/``class`` the
    model's), then ``p_<class>`` for every class (empty when no per-class scores were stored), then the latest
    review (``CSV_REVIEW_COLUMNS``, empty when unreviewed; ``review_class`` the class after review). Boxes in
    level-0 px.
    """
    if slide_ids is None:
        ids = [s.id for s in store.slides()]
    elif isinstance(slide_ids, int):
        ids = [slide_ids]
    else:
        ids = [int(s) for s in slide_ids]
    per_slide = [(sid, _select(store, sid, selection)) for sid in ids]
    names = max((sel.names for _, sel in per_slide), key=len, default=store.class_names)
    n = 0
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*CSV_BASE_COLUMNS, *(f"p_{c}" for c in names), *CSV_REVIEW_COLUMNS])
        for sid, sel in per_slide:
            cols = sel.cols
            cs = cols.get("class_scores")
            for i, key in enumerate(cols["key"]):
                lab = int(cols["labels"][i])
                probs = [""] * len(names) if cs is None else [f"{v:.6g}" for v in cs[i]]
                probs += [""] * (len(names) - len(probs))
                rev = sel.reviews.get(key)
                review = ["", "", "", ""]
                if rev is not None:
                    review = [rev.decision, names[sel.shown[i]], rev.reviewer, rev.time]
                x0, y0, x1, y1 = (f"{v:.2f}" for v in cols["boxes"][i])
                writer.writerow(
                    [
                        sid,
                        int(cols["id"][i]),
                        key,
                        x0,
                        y0,
                        x1,
                        y1,
                        lab,
                        names[lab],
                        f"{cols['scores'][i]:.6g}",
                    ]
                    + probs
                    + review
                )
                n += 1
    return n


def to_coco_results(
    store: DetectionStore,
    slide_id: int,
    path: str | os.PathLike[str] | None = None,
    *,
    image_id: int | None = None,
    selection: ExportSelection | None = None,
) -> list[dict[str, Any]]:
    """A slide's detections in the COCO results format (what ``COCO.loadRes`` reads), written to ``path`` if given.

    ``selection`` picks the detections (default: all; its ``classes`` look at the reviewed class). Each entry:
    ``image_id`` (default: the slide id), ``category_id`` = the model's label + 1 (COCO ids are 1-based),
    ``bbox`` = ``[x, y, w, h]`` in level-0 px, ``score``. The model's output, to score it against ground truth:
    reviews choose which detections are written but never change a category.
    """
    cols = _select(store, slide_id, selection).cols
    img = int(slide_id if image_id is None else image_id)
    out = [
        {
            "image_id": img,
            "category_id": int(lab) + 1,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(s),
        }
        for (x0, y0, x1, y1), lab, s in zip(
            cols["boxes"].tolist(), cols["labels"].tolist(), cols["scores"].tolist(), strict=True
        )
    ]
    if path is not None:
        Path(path).write_text(json.dumps(out))
    return out
