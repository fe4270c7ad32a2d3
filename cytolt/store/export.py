"""Export a slide's detections from a :class:`DetectionStore`: QuPath GeoJSON, CSV and COCO results.

Exports carry boxes, classes, scores and review decisions only: never the slide path, its label/macro images
or description text, which can hold patient data (DOMAIN.md "Slide files").
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cytolt.store.geojson import DEFAULT_COLORS, detection_feature, detection_uuid, feature_collection
from cytolt.store.store import DetectionStore, Review, no_gc

__all__ = ["to_coco_results", "to_csv", "to_geojson"]


def _class_names(store: DetectionStore, labels: Sequence[int]) -> list[str]:
    names = store.class_names
    top = max(labels, default=-1)
    return names + [f"class_{i}" for i in range(len(names), top + 1)]


def _latest_reviews(store: DetectionStore, slide_id: int) -> dict[str, Review]:
    return {r.detection_key: r for r in store.reviews(slide_id, latest=True) if r.detection_id is not None}


def to_geojson(
    store: DetectionStore,
    slide_id: int,
    path: str | os.PathLike[str] | None,
    *,
    class_colors: Mapping[str, Sequence[int]] | None = None,
    min_score: float = 0.0,
    include_rejected: bool = True,
) -> dict[str, Any]:
    """Write a slide's detections as a QuPath GeoJSON FeatureCollection (also returned); ``path=None`` only returns.

    Each Feature: ``id`` = uuid5 of (slide content hash, or ``slide<id>`` without one) and the detection key, so
    re-exports give the same ids; a Polygon of the box in level-0 px; ``properties.objectType = "detection"``;
    ``classification`` = reviewed class if reclassified, else the model's, with its colour (``class_colors``,
    else Tableau 10 by label); ``measurements`` = ``score`` and ``p_<class>`` per-class scores when stored, plus
    ``review_accepted`` (1 accept / reclassify, 0 reject) for reviewed ones; ``properties.review`` holds the
    latest decision, reviewer and time, ``properties.model_class`` the model's class; ``name`` reads
    ``"HSIL 0.93"`` (``" [reject]"``, ``" [reclassify to LSIL]"`` etc. appended once reviewed).
    """
    slide = store.slide(slide_id)
    cols = store.columns(slide_id, min_score=min_score)
    labels = cols["labels"].tolist()
    names = _class_names(store, labels)
    colors = {n: DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i, n in enumerate(names)}
    if class_colors:
        unknown = sorted(set(class_colors) - set(names))
        if unknown:
            raise ValueError(f"class_colors names unknown classes {unknown}; classes are {names}")
        colors.update({k: tuple(int(c) for c in v) for k, v in class_colors.items()})
    reviews = _latest_reviews(store, slide_id)
    slide_uid = slide.content_hash or f"slide{slide.id}"
    with no_gc():
        features = _features(cols, names, colors, reviews, slide_uid, include_rejected)
    doc = feature_collection(features)
    if path is not None:
        Path(path).write_text(json.dumps(doc))
    return doc


def _features(
    cols: dict[str, Any],
    names: list[str],
    colors: Mapping[str, Sequence[int]],
    reviews: Mapping[str, Review],
    slide_uid: str,
    include_rejected: bool,
) -> list[dict[str, Any]]:
    labels = cols["labels"].tolist()
    class_scores = cols.get("class_scores")
    features = []
    for i, key in enumerate(cols["key"]):
        model_class = names[labels[i]]
        score = float(cols["scores"][i])
        measurements = {"score": score}
        if class_scores is not None:
            measurements.update({f"p_{n}": float(v) for n, v in zip(names, class_scores[i], strict=False)})
        extra: dict[str, Any] = {"model_class": model_class}
        shown = model_class
        name = f"{model_class} {score:.2f}"
        review = reviews.get(key)
        if review is not None:
            if review.decision == "reject" and not include_rejected:
                continue
            if review.decision == "reclassify" and review.new_label is not None:
                shown = names[review.new_label]
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
    min_score: float = 0.0,
) -> int:
    """Write detections of one slide, several, or all (``None``) as CSV; returns the number of rows.

    Columns: ``CSV_BASE_COLUMNS``, then ``p_<class>`` for every class (empty when no per-class scores were
    stored), then the latest review (``CSV_REVIEW_COLUMNS``, empty when unreviewed). Boxes in level-0 px.
    """
    if slide_ids is None:
        ids = [s.id for s in store.slides()]
    elif isinstance(slide_ids, int):
        ids = [slide_ids]
    else:
        ids = [int(s) for s in slide_ids]
    per_slide = [(sid, store.columns(sid, min_score=min_score), _latest_reviews(store, sid)) for sid in ids]
    all_labels = [lab for _, cols, _ in per_slide for lab in cols["labels"].tolist()]
    names = _class_names(store, all_labels)
    n = 0
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*CSV_BASE_COLUMNS, *(f"p_{c}" for c in names), *CSV_REVIEW_COLUMNS])
        for sid, cols, reviews in per_slide:
            cs = cols.get("class_scores")
            for i, key in enumerate(cols["key"]):
                lab = int(cols["labels"][i])
                probs = [""] * len(names) if cs is None else [f"{v:.6g}" for v in cs[i]]
                probs += [""] * (len(names) - len(probs))
                rev = reviews.get(key)
                review = ["", "", "", ""]
                if rev is not None:
                    shown = names[rev.new_label] if rev.new_label is not None else names[lab]
                    review = [rev.decision, shown, rev.reviewer, rev.time]
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
    min_score: float = 0.0,
) -> list[dict[str, Any]]:
    """A slide's detections in the COCO results format (what ``COCO.loadRes`` reads), written to ``path`` if given.

    Each entry: ``image_id`` (default: the slide id), ``category_id`` = label + 1 (COCO ids are 1-based),
    ``bbox`` = ``[x, y, w, h]`` in level-0 px, ``score``. Model output only; reviews are not applied.
    """
    cols = store.columns(slide_id, min_score=min_score)
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
