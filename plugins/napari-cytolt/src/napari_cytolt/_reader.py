"""npe2 reader: whole-slide images (lazy multiscale pyramid in microns) and cytolt run folders.

``napari_get_reader(path)`` returns a reader function or None; it never raises, so napari can try the next
plugin. A slide (a file name in :data:`cytolt.io.formats.SLIDE_SUFFIXES`) opens as one RGB multiscale image
layer whose ``scale`` is the slide's microns per pixel (units "um"), so napari's scale bar reads true lengths.
A run folder (anything :meth:`cytolt.store.RunFolder.locate` accepts: ``RUN_DIR``, ``RUN_DIR/run.sqlite``,
``RUN_DIR/<slide folder>``) opens its slide plus a points layer of its detections. Every layer this plugin
makes carries a :class:`LayerInfo` as ``metadata["cytolt"]`` (its role and, for a run, the
:class:`~cytolt.review.RunSlide`), which the review widget and the writer read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cytolt.io import Slide, SlideError, open_slide, slide_pyramid
from cytolt.io.formats import is_slide_name
from cytolt.review import DetectionTable, RunSlide, class_colors, detection_table, open_run, run_params
from cytolt.store import DetectionStore, RunFolder

__all__ = [
    "LayerInfo",
    "detections_layer_data",
    "layer_info",
    "napari_get_reader",
    "open_slide_quiet",
    "read_run",
    "read_slide",
    "slide_layer_data",
]

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]

# Border of a detection marker as a fraction of its side (napari's relative border width): thin enough to see
# the cell through a 40-um box at full zoom.
BORDER_WIDTH = 0.03
# No antialiasing: markers are axis-aligned squares, and vispy pads every marker sprite by 6 px for it, which
# costs a third of the frame with 100,000 markers under software GL (measured, docs/napari.md).
ANTIALIASING = 0
# Markers never shrink below 4 screen px: at the whole-slide view each detection stays a visible coloured
# square (vispy then draws a 2-px border) instead of vanishing.
MIN_MARKER_PX = 4
METADATA_KEY = "cytolt"  # layer.metadata[METADATA_KEY] is a LayerInfo


@dataclass(frozen=True)
class LayerInfo:
    """What napari-cytolt knows about a layer it made, kept as ``layer.metadata["cytolt"]``.

    ``role``: ``"slide"`` (the image), ``"detections"`` (the points) or ``"highlight"`` (the widget's current
    cell); ``slide_path`` the slide file an image layer shows; ``run`` the run slide, for layers of a run folder.
    """

    role: Literal["slide", "detections", "highlight"]
    slide_path: Path | None = None
    run: RunSlide | None = None


def layer_info(metadata: Mapping[str, Any]) -> LayerInfo | None:
    """The :class:`LayerInfo` in a layer's metadata, None for layers napari-cytolt did not make."""
    info = metadata.get(METADATA_KEY)
    return info if isinstance(info, LayerInfo) else None


def open_slide_quiet(path: str | os.PathLike[str]) -> Slide | None:
    """``open_slide(path)`` or None when cytolt.io cannot read it (for readers, which must never raise)."""
    try:
        return open_slide(path)
    except (SlideError, ValueError, OSError):
        return None


def napari_get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """A reader for one slide file or run folder, else None (never raises).

    A slide file is opened here already (reading its header costs milliseconds), so a TIFF that cytolt.io
    cannot read is left to other readers instead of failing later.
    """
    try:
        if not isinstance(path, str | os.PathLike):
            if len(path) != 1:
                return None  # a stack of slides is no slide
            path = path[0]
        if RunFolder.locate(path) is not None:
            return _run_reader
        p = Path(path)
        if not (p.is_file() and is_slide_name(p)):
            return None
    except (OSError, TypeError, ValueError):
        return None
    slide = open_slide_quiet(p)
    if slide is None:
        return None
    return lambda _path: [slide_layer_data(slide)]


def _run_reader(path: str | Sequence[str]) -> list[LayerData]:
    try:
        return read_run(os.fspath(path if isinstance(path, str | os.PathLike) else path[0]))
    except (OSError, ValueError) as exc:
        # napari shows warnings as notifications; raising would only say "plugin failed"
        warnings.warn(str(exc), stacklevel=2)
        return []


def read_slide(path: str | os.PathLike[str]) -> list[LayerData]:
    """Layer data of one slide file: ``[(levels, kwargs, "image")]``; ``[]`` when cytolt.io cannot open it."""
    slide = open_slide_quiet(path)
    return [] if slide is None else [slide_layer_data(slide)]


def _scale(mpp: tuple[float, float] | None) -> tuple[tuple[float, float], tuple[str, str] | None]:
    if mpp is None:
        return (1.0, 1.0), None
    return (float(mpp[1]), float(mpp[0])), ("um", "um")


def slide_layer_data(slide: Slide, *, run: RunSlide | None = None) -> LayerData:
    """A multiscale RGB image layer over a slide, in microns (level-0 pixel = ``scale`` = (mpp_y, mpp_x) um).

    Without an mpp the scale is 1 (level-0 pixels) and napari shows pixel units. ``run``: the run slide it
    shows, recorded in the layer's :class:`LayerInfo`.
    """
    scale, units = _scale(slide.mpp)
    kwargs: dict[str, Any] = {
        "name": slide.path.name,
        "rgb": True,
        "multiscale": True,
        "contrast_limits": (0, 255),
        "scale": scale,
        "metadata": {METADATA_KEY: LayerInfo("slide", slide_path=slide.path, run=run)},
    }
    if units is not None:
        kwargs["units"] = units
    return slide_pyramid(slide), kwargs, "image"


def detections_layer_data(
    table: DetectionTable,
    *,
    name: str,
    mpp: tuple[float, float] | None,
    colors: Sequence[Sequence[int]],
    run: RunSlide | None = None,
) -> LayerData:
    """A points layer of detections: a square marker enclosing each box, its border coloured by class.

    ``colors`` (r, g, b) per label. Features: ``class`` (categorical, categories = class names in label
    order), ``score``, ``id`` (store row id), ``review`` ("" until a decision is made). Filter with
    ``layer.shown`` (:func:`cytolt.review.shown_mask`). ``run``: the run slide they belong to, recorded in the
    layer's :class:`LayerInfo`.
    """
    names = list(table.class_names)
    n_labels = int(table.labels.max()) + 1 if len(table) else 0
    names += [f"class_{i}" for i in range(len(names), n_labels)]
    palette = np.array([[*c[:3], 255] for c in colors], dtype=np.float32) / 255.0
    if len(palette) < len(names):
        palette = np.concatenate([palette, np.ones((len(names) - len(palette), 4), np.float32)])
    features = pd.DataFrame(
        {
            "class": pd.Categorical.from_codes(table.labels, categories=names),
            "score": table.scores,
            "id": table.ids,
            "review": pd.Categorical.from_codes(
                np.zeros(len(table), dtype=np.int8), categories=["", "accept", "reject", "reclassify"]
            ),
        }
    )
    scale, units = _scale(mpp)
    kwargs: dict[str, Any] = {
        "name": name,
        "size": table.sizes,
        "symbol": "square",
        "face_color": "transparent",
        "border_color": palette[table.labels] if len(table) else "white",
        "border_width": BORDER_WIDTH,
        "canvas_size_limits": (MIN_MARKER_PX, 10000),
        "antialiasing": ANTIALIASING,
        "features": features,
        "scale": scale,
        "metadata": {METADATA_KEY: LayerInfo("detections", run=run)},
    }
    if units is not None:
        kwargs["units"] = units
    return table.centers, kwargs, "points"


def read_run(path: str | os.PathLike[str], *, slide: int | str | None = None) -> list[LayerData]:
    """Layer data of a run folder's slide: the slide image and its detections (see :func:`cytolt.review.open_run`).

    Raises ValueError (naming the path) when the run folder or its slide file cannot be found or read.
    """
    run = open_run(path, slide=slide)
    if run.slide_path is None:
        raise ValueError(
            f"{run.store_path}: slide {run.stored_path} is gone, and no {run.name} lies in or beside "
            f"{run.run_dir}; move the slide back or copy it next to the run folder"
        )
    opened = open_slide_quiet(run.slide_path)
    if opened is None:
        raise ValueError(f"{run.slide_path}: cytolt could not open the slide of run {run.run_dir}")
    with DetectionStore(run.store_path, readonly=True) as store:
        table = detection_table(store, run.slide_id)
        params = run_params(store, run.slide_id)
    mpp = opened.mpp or run.mpp
    return [
        slide_layer_data(opened, run=run),
        detections_layer_data(
            table,
            name=f"{run.name} detections",
            mpp=mpp,
            colors=class_colors(table.class_names, report_path=run.report_path, run_params=params),
            run=run,
        ),
    ]
