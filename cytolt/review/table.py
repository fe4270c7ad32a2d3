"""A slide's detections as columns for a points layer, the class filter and the class colours.

boxes are ``(x0, y0, x1, y1)`` level-0 pixels with pixel ``i`` spanning ``[i, i + 1)``; napari puts pixel
centres on integers, so a point at level-0 position ``x`` sits at napari data coordinate ``x - 0.5``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytolt.store import DetectionStore
from cytolt.store.geojson import DEFAULT_COLORS

__all__ = ["DetectionTable", "class_colors", "detection_table", "shown_mask"]


@dataclass(frozen=True)
class DetectionTable:
    """All detections of a slide as columns, best score first (N rows).

    ``ids`` (N,) int64 store row ids; ``boxes`` (N, 4) float32 xyxy level-0 px; ``labels`` (N,) int64;
    ``scores`` (N,) float32; ``class_names`` by label. ``centers`` (N, 2) float64 are napari data coordinates
    (row, column) of the box centres (``- 0.5``: napari puts pixel centres on integers) and ``sizes`` (N,) the
    larger box side, so a square marker of that size encloses the box.
    """

    ids: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def centers(self) -> np.ndarray:
        b = self.boxes.astype(np.float64)
        return np.stack([(b[:, 1] + b[:, 3]) / 2 - 0.5, (b[:, 0] + b[:, 2]) / 2 - 0.5], axis=1)

    @property
    def sizes(self) -> np.ndarray:
        b = self.boxes
        return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).astype(np.float64)

    def class_of(self) -> list[str]:
        names = self.class_names
        return [names[i] if i < len(names) else f"class_{i}" for i in self.labels.tolist()]


def detection_table(store: DetectionStore, slide_id: int, *, min_score: float = 0.0) -> DetectionTable:
    """A slide's detections from the store as a :class:`DetectionTable` (one query, no R-tree: all of them)."""
    dets, ids = store.query(slide_id, min_score=min_score)
    arr = dets.numpy()
    return DetectionTable(
        ids=ids,
        boxes=arr["boxes"].reshape(-1, 4),
        labels=arr["labels"],
        scores=arr["scores"],
        class_names=store.class_names,
    )


def shown_mask(
    labels: np.ndarray, scores: np.ndarray, *, classes: Sequence[int] | None = None, min_score: float = 0.0
) -> np.ndarray:
    """(N,) bool: detections whose label is in ``classes`` (None: every class) and ``score >= min_score``."""
    mask = np.asarray(scores) >= float(min_score)
    if classes is not None:
        mask &= np.isin(np.asarray(labels), np.asarray(list(classes), dtype=np.int64))
    return mask


def class_colors(
    class_names: Sequence[str],
    *,
    report_path: str | os.PathLike[str] | None = None,
    run_params: Mapping[str, Any] | None = None,
) -> list[tuple[int, int, int]]:
    """(r, g, b) per class in label order: the run report's model colours when it lists these classes, else
    the colours the run recorded (``run_params["colors"]``, class name -> (r, g, b), see
    :func:`cytolt.review.run_params`) for the names it has, else Tableau 10 by label (as the exports)."""
    names = list(class_names)
    if report_path is not None:
        try:
            model = json.loads(Path(report_path).read_text())["model"]
            if list(model["classes"]) == names:
                return [tuple(int(v) for v in c[:3]) for c in model["colors"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    recorded = (run_params or {}).get("colors")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    fallback = [tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i in range(len(names))]
    return [_rgb(recorded.get(name)) or default for name, default in zip(names, fallback, strict=True)]


def _rgb(value: Any) -> tuple[int, int, int] | None:
    """``value`` as (r, g, b) ints in 0-255, or None when it is no such colour."""
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return rgb if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) else None  # type: ignore[return-value]
