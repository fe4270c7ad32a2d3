"""npe2 reader: whole-slide images (lazy multiscale pyramid in microns) and cytolt run folders.

``napari_get_reader(path)`` returns a reader function or None; it never raises, so napari can try the next
plugin. A slide (a file name in :data:`cytolt.io.formats.SLIDE_SUFFIXES`) opens as one RGB multiscale image
layer whose ``scale`` is the slide's microns per pixel (units "um"), so napari's scale bar reads true lengths.
A run folder (anything :meth:`cytolt.store.RunFolder.locate` accepts: ``RUN_DIR``, ``RUN_DIR/run.sqlite``,
``RUN_DIR/<slide folder>``) opens its slide plus a points layer of its detections. Every slide and run layer
carries a :class:`LayerInfo` as ``metadata["cytolt"]`` (its role and, for a run, the
:class:`~cytolt.review.RunSlide`), which the review widget and the writer read. A QuPath GeoJSON file
(``*.geojson``: ``cytolt export``'s or QuPath's own) opens as a shapes layer of its polygons and a points layer
of its points (:func:`read_geojson`), drawn over the slide in microns when the file lies in a run's slide folder.
"""

from __future__ import annotations

import json
import math
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
from cytolt.review.export import run_slide_folders
from cytolt.store import DetectionStore, RunFolder

__all__ = [
    "LayerInfo",
    "detections_layer_data",
    "layer_info",
    "napari_get_reader",
    "open_slide_quiet",
    "read_geojson",
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
            return _warning_reader(read_run)
        p = Path(path)
        if p.is_file() and p.suffix.lower() == ".geojson":
            return _warning_reader(read_geojson)
        if not (p.is_file() and is_slide_name(p)):
            return None
    except (OSError, TypeError, ValueError):
        return None
    slide = open_slide_quiet(p)
    if slide is None:
        return None
    return lambda _path: [slide_layer_data(slide)]


def _warning_reader(read: Callable[[str], list[LayerData]]) -> ReaderFunction:
    """A reader function calling ``read(path)`` that turns its OSError / ValueError into a warning and ``[]``."""

    def reader(path: str | Sequence[str]) -> list[LayerData]:
        try:
            return read(os.fspath(path if isinstance(path, str | os.PathLike) else path[0]))
        except (OSError, ValueError) as exc:
            # napari shows warnings as notifications; raising would only say "plugin failed"
            warnings.warn(str(exc), stacklevel=2)
            return []

    return reader


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


# ----------------------------------------------------------------------------------------------- GeoJSON
# Colour of objects without a classification colour: yellow, as this plugin's writer marks annotations.
UNCLASSIFIED_COLOR = (255, 255, 0)
# Side of a point's marker, in microns on a slide of known mpp, else in pixels.
POINT_SIZE_UM = 10.0
POINT_SIZE_PX = 40.0
# Shape outline width in level-0 pixels.
EDGE_WIDTH_PX = 2.0


def read_geojson(path: str | os.PathLike[str]) -> list[LayerData]:
    """Layer data of a QuPath GeoJSON file (a FeatureCollection, one Feature or a list of Features).

    Polygon and MultiPolygon features (each polygon's outer ring; axis-aligned boxes as napari rectangles)
    become one shapes layer, Point and
    MultiPoint features one points layer; other geometries are skipped with a warning. Each object is
    coloured by its classification (``color`` [r, g, b], or QuPath's packed ``colorRGB``) and carries the
    features ``class`` (the classification name, "" when unclassified) and ``score``
    (``measurements.score``, NaN without one). Coordinates are level-0 pixels; ``scale`` is the slide's mpp
    (units um) when the file lies in a slide folder of a run (:meth:`RunFolder.locate` on its parent's
    parent and that slide's mpp in the store), else 1 (pixels). Raises ValueError naming the file and the
    feature for what is no GeoJSON.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    features = (
        doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else doc
    )
    features = [features] if isinstance(features, dict) and features.get("type") == "Feature" else features
    if not isinstance(features, list):
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection, a Feature or a list of Features")
    shapes: list[np.ndarray] = []
    kinds: list[str] = []
    points: list[tuple[float, float]] = []
    rows: dict[str, list[Any]] = {"shapes": [], "points": []}
    skipped: set[str] = set()
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise ValueError(f"{path}: feature {i} is not a GeoJSON Feature with a geometry")
        geometry = feature["geometry"]
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        try:
            row = _feature_row(feature.get("properties") or {})
            if kind in ("Polygon", "MultiPolygon"):
                for polygon in [coords] if kind == "Polygon" else coords:
                    # plain Python per ring: numpy's per-call overhead was half the time on 10,000 boxes
                    ring = [(float(x), float(y)) for x, y, *_ in polygon[0]]
                    if len(ring) > 1 and ring[0] == ring[-1]:
                        ring.pop()
                    kinds.append("rectangle" if _is_box(ring) else "polygon")
                    # napari (row, column), pixel centres on integers
                    shapes.append(np.array([(y - 0.5, x - 0.5) for x, y in ring]))
                    rows["shapes"].append(row)
            elif kind in ("Point", "MultiPoint"):
                for x, y, *_ in [coords] if kind == "Point" else coords:
                    points.append((float(y) - 0.5, float(x) - 0.5))
                    rows["points"].append(row)
            else:
                skipped.add(str(kind))
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"{path}: feature {i}: its {kind} coordinates or classification cannot be read ({exc})"
            ) from None
    if skipped:
        warnings.warn(
            f"{path}: skipped {', '.join(sorted(skipped))} features (only polygons and points open)",
            stacklevel=2,
        )
    mpp = _run_slide_mpp(path)
    scale, units = _scale(mpp)
    common: dict[str, Any] = {"scale": scale, **({"units": units} if units is not None else {})}
    layers: list[LayerData] = []
    if shapes:
        colors, features_df = _colors_and_features(rows["shapes"])
        kwargs = {
            "name": path.name,
            "shape_type": kinds,
            "edge_color": colors,
            "face_color": "transparent",
            "edge_width": EDGE_WIDTH_PX,
            "features": features_df,
            **common,
        }
        layers.append((shapes, kwargs, "shapes"))
    if points:
        colors, features_df = _colors_and_features(rows["points"])
        size = POINT_SIZE_PX if mpp is None else POINT_SIZE_UM / float(mpp[0])
        kwargs = {
            "name": f"{path.name} points" if shapes else path.name,
            "size": size,
            "face_color": colors,
            "border_color": colors,
            "features": features_df,
            **common,
        }
        layers.append((np.asarray(points, dtype=np.float64), kwargs, "points"))
    return layers


def _is_box(ring: list[tuple[float, float]]) -> bool:
    """Whether a ring of (x, y) without its closing point is an axis-aligned rectangle (every detection box).

    Such shapes open as napari rectangles, so a box stays a box when it is edited; they build as fast as
    polygons (docs/export.md, "Measured").
    """
    if len(ring) != 4:
        return False
    return all((a[0] == b[0]) != (a[1] == b[1]) for a, b in zip(ring, ring[1:] + ring[:1], strict=True))


def _feature_row(props: Mapping[str, Any]) -> tuple[str, tuple[int, int, int], float]:
    """(class name, colour, score) of a Feature's properties, as QuPath writes them (0.2 to 0.5)."""
    cls = props.get("classification")
    name, color = "", UNCLASSIFIED_COLOR
    if isinstance(cls, Mapping):
        raw = cls.get("name")
        if raw is None and isinstance(cls.get("names"), list):
            raw = ": ".join(map(str, cls["names"]))  # a derived class, e.g. "Tumor: Positive"
        name = str(raw or "")
        if isinstance(cls.get("color"), list) and len(cls["color"]) >= 3:
            color = tuple(min(max(int(c), 0), 255) for c in cls["color"][:3])  # type: ignore[assignment]
        elif isinstance(cls.get("colorRGB"), int):  # QuPath < 0.4: packed (A)RGB as a signed int
            v = cls["colorRGB"]
            color = ((v >> 16) & 255, (v >> 8) & 255, v & 255)
    elif isinstance(cls, str):
        name = cls
    meas = props.get("measurements")
    if isinstance(meas, list):  # QuPath < 0.4: [{"name": ..., "value": ...}]
        meas = {m.get("name"): m.get("value") for m in meas if isinstance(m, Mapping)}
    score = meas.get("score") if isinstance(meas, Mapping) else None
    ok = isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score)
    return name, color, float(score) if ok else math.nan


def _colors_and_features(
    rows: list[tuple[str, tuple[int, int, int], float]],
) -> tuple[np.ndarray, pd.DataFrame]:
    colors = np.array([[*c, 255] for _, c, _ in rows], dtype=np.float32) / 255.0
    names = [n for n, _, _ in rows]
    features = pd.DataFrame(
        {"class": pd.Categorical(names, categories=sorted(set(names))), "score": [s for *_, s in rows]}
    )
    return colors, features


def _run_slide_mpp(path: Path) -> tuple[float, float] | None:
    """The store's mpp of the slide whose folder holds ``path`` (``RUN_DIR/<slide folder>/file``), else None."""
    found = RunFolder.locate(path.parent.parent)
    if found is None:
        return None
    run, _ = found
    try:
        with DetectionStore(run.store_path, readonly=True) as store:
            records = store.slides()
    except (OSError, ValueError):
        return None
    folders = run_slide_folders(run, records)
    record = next((r for r in records if folders[r.id] == path.parent.name), None)
    return None if record is None else record.mpp
