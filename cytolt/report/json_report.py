"""``report.json``: one slide's screening result as plain JSON, validated against ``schema/report.schema.json``.

Fields (the schema file documents each): ``slide`` (file name, format, level-0 dimensions, mpp), ``status`` and
``error``, ``tiles`` (read, total, size, overlap, mpp), ``detections`` (total and per class), ``score`` (slide
score, category, reason, counts above thresholds; null without a scorer), ``top_cells`` (per class, best first),
``evidence`` (the cells behind the slide score), ``score_histogram``, ``timings`` (seconds per stage) and
``model`` (name, classes, colours). Boxes are [x0, y0, x1, y1] level-0 px; every cell carries its detection key
in ``run.sqlite``, so a viewer can jump to it and a review can refer to it.

Privacy: the slide is named by its file name alone (folders often carry patient or case names); nothing from
the slide's metadata text, label or macro image is read (DOMAIN.md "Slide files").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolt import __version__
from cytolt.store.geojson import DEFAULT_COLORS
from cytolt.store.store import detection_keys

if TYPE_CHECKING:
    from cytolt.screen.engine import SlideResult

__all__ = [
    "HISTOGRAM_BINS",
    "SCHEMA_VERSION",
    "TOP_CELLS",
    "class_colors",
    "load_schema",
    "slide_report",
    "validate_report",
    "write_report",
]

SCHEMA_VERSION = 1
TOP_CELLS = 12  # gallery cells per class when no scorer chose them (a 6 x 2 grid in the HTML)
HISTOGRAM_BINS = 20  # score bins of width 0.05 over [0, 1]

Colors = Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None


@cache
def load_schema() -> dict[str, Any]:
    """The report JSON schema shipped in the package (``cytolt/report/schema/report.schema.json``)."""
    text = resources.files("cytolt.report").joinpath("schema/report.schema.json").read_text()
    return json.loads(text)


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first field of ``report`` that breaks the schema, and why."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"report does not follow report.schema.json at {where}: {error.message}")


def slide_report(
    result: SlideResult,
    *,
    class_names: Sequence[str] | None = None,
    colors: Colors = None,
    top_k: int = TOP_CELLS,
    created: str | None = None,
) -> dict[str, Any]:
    """The report of one screened (or failed) slide as a JSON-safe dict, validated against the schema.

    Args:
        result: what :func:`cytolt.screen.screen_slide` returned (or ``failed_result``).
        class_names: class names in label order; default ``result.class_names``.
        colors: (r, g, b) per class, as a sequence in label order or a name -> colour mapping; default
            Tableau 10.
        top_k: gallery cells per class when ``result.score`` is None (else the scorer's top cells are used).
        created: ISO time stamp; default now (UTC).
    """
    names = list(class_names if class_names is not None else result.class_names)
    palette = _palette(names, colors)
    dets = result.detections.numpy()
    boxes, scores, labels = dets["boxes"], dets["scores"], dets["labels"]
    if len(labels) and labels.max() >= len(names):
        raise ValueError(f"detection label {labels.max()} has no class name; got {len(names)} names")
    # The keys run.sqlite gives these detections (same order, same rounding), so cells can be looked up there.
    keys = detection_keys(boxes, labels) if len(labels) else []

    rescored = result.second_stage
    rows = {} if rescored is None else rescored.rows()

    def cell(i: int, score: float | None = None, label: int | None = None) -> dict[str, Any]:
        lab = int(labels[i]) if label is None else int(label)
        out = {
            "key": keys[i],
            "class": names[lab],
            "score": _prob(scores[i] if score is None else score),
            "box": [round(float(v), 2) for v in boxes[i]],
        }
        j = rows.get(i)
        if j is not None:  # both scores of a re-scored cell, at the class it is shown as
            assert rescored is not None
            out["detector_score"] = _prob(rescored.detector_scores[j, lab])
            out["classifier_score"] = _prob(rescored.classifier_scores[j, lab])
            out["detector_class"] = names[int(rescored.detector_scores[j].argmax())]
        return out

    score = result.score
    if score is not None:
        top = {
            name: [
                cell(i, s, names.index(name))
                for i, s in zip(score.top_indices.get(name, []), score.top_scores.get(name, []), strict=True)
            ]
            for name in names
        }
        evidence = [cell(i, s) for i, s in zip(score.evidence_indices, score.evidence_scores, strict=True)]
        score_json: dict[str, Any] | None = {
            "slide_score": _prob(score.slide_score),
            "category": score.category,
            "reason": score.reason,
            "counts": {k: int(v) for k, v in score.counts.items()},
        }
    else:
        top = {}
        for c, name in enumerate(names):
            mine = np.flatnonzero(labels == c)
            best = mine[np.argsort(-scores[mine], kind="stable")][:top_k]
            top[name] = [cell(int(i)) for i in best]
        evidence, score_json = [], None
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    histogram = {
        name: np.histogram(np.clip(scores[labels == c], 0.0, 1.0), bins=edges)[0].astype(int).tolist()
        for c, name in enumerate(names)
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "cytolt_version": __version__,
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
        "slide": {
            "name": Path(result.path).name,
            "vendor": result.vendor,
            "backend": result.backend,
            "dimensions": None if result.dimensions is None else [int(v) for v in result.dimensions],
            "mpp": None if result.mpp is None else [float(v) for v in result.mpp],
            "mpp_source": result.mpp_source,
        },
        "status": result.status,
        "error": result.error,
        "tiles": {
            "read": int(result.tiles_read),
            "total": int(result.tiles_total),
            "size": int(result.tile_size),
            "overlap": int(result.overlap),
            "mpp": None if result.read_mpp is None else [float(v) for v in result.read_mpp],
        },
        "detections": {
            "total": len(labels),
            "per_class": {name: int((labels == c).sum()) for c, name in enumerate(names)},
        },
        "score": score_json,
        "adequacy": None if score is None or score.adequacy is None else score.adequacy.to_dict(),
        "interpretation": None
        if score is None
        else {"bethesda": score.interpretation, "triage": score.triage, "findings": list(score.findings)},
        "focus": _focus(result, None if score is None else score),
        "top_cells": top,
        "evidence": evidence,
        "score_histogram": {"edges": [round(float(e), 4) for e in edges], "counts": histogram},
        "timings": {k: float(v) for k, v in result.timings.items()},
        "model": {"name": result.model_name, "classes": names, "colors": [list(c) for c in palette]},
        "second_stage": None
        if rescored is None
        else rescored.to_dict(keys, seconds=result.timings.get("classify")),
    }
    validate_report(report)
    return report


def _focus(result: SlideResult, score: Any) -> dict[str, Any] | None:
    """The report's focus section: threshold, out-of-focus fraction and the tiles (rounded), for the heat map."""
    q = result.quality
    if not result.ok or score is None or score.adequacy is None:
        return None
    tiles = [
        [
            *(round(float(v), 1) for v in box),
            None if np.isnan(sh) else round(float(sh), 1),
            round(float(ce), 4),
        ]
        for box, sh, ce in zip(q.tiles_xywh, q.sharpness, q.cellular, strict=True)
    ]
    fraction = score.adequacy.out_of_focus_fraction
    return {
        "threshold": float(score.adequacy.focus_threshold),
        "out_of_focus_fraction": None if fraction is None else round(float(fraction), 4),
        "tiles": tiles,
    }


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validate ``report`` and write it as indented JSON to ``path``; returns the path."""
    validate_report(report)
    path = Path(path)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def class_colors(report: Mapping[str, Any]) -> dict[str, tuple[int, int, int]]:
    """Class name -> (r, g, b) of a report's model."""
    model = report["model"]
    return {n: tuple(int(v) for v in c) for n, c in zip(model["classes"], model["colors"], strict=True)}


def _palette(names: Sequence[str], colors: Colors) -> list[tuple[int, int, int]]:
    if colors is None:
        return [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(names))]
    if isinstance(colors, Mapping):
        missing = [n for n in names if n not in colors]
        if missing:
            raise ValueError(f"colors has no entry for classes {missing}")
        seq = [colors[n] for n in names]
    else:
        seq = list(colors)
        if len(seq) != len(names):
            raise ValueError(f"got {len(seq)} colors for {len(names)} classes")
    out = [tuple(int(v) for v in c) for c in seq]
    if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in out):
        raise ValueError(f"colors must be (r, g, b) with values in 0-255; got {out}")
    return out  # type: ignore[return-value]


def _prob(value: float) -> float:
    """A score as a JSON number in [0, 1]; float error of up to 1e-4 past either end is clipped."""
    v = float(value)
    if not (math.isfinite(v) and -1e-4 <= v <= 1 + 1e-4):
        raise ValueError(f"scores must be probabilities in [0, 1]; got {v}")
    return round(min(max(v, 0.0), 1.0), 6)
