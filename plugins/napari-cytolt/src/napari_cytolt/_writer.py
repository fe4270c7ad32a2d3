"""npe2 writers: a points or shapes layer to QuPath GeoJSON or CSV.

A cytolt detections layer (its ``metadata["cytolt"]`` a :class:`~napari_cytolt._reader.LayerInfo` with the run
slide) is exported from its run's store through
:mod:`cytolt.store.export`, so the files carry every detection with its latest review (decision, reviewed
class, reviewer, time). Any other points or shapes layer is written as QuPath annotations: its data
coordinates are taken as level-0 pixels, which holds for layers drawn over a cytolt slide (napari gives new
layers the scale of the layers shown). napari puts pixel centres on integers, so ``x = column + 0.5``.
"""

from __future__ import annotations

import csv
import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cytolt.review import RunSlide
from cytolt.store import DetectionStore, to_csv, to_geojson
from cytolt.store.geojson import feature_collection
from napari_cytolt._reader import layer_info

__all__ = ["write_points_csv", "write_points_geojson", "write_shapes_csv", "write_shapes_geojson"]

# Feature ids of annotations: uuid5 in a fixed namespace, so writing the same layer twice gives the same ids.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/cytolt/cytolt/napari-annotation")
_ANNOTATION_COLOR = (255, 255, 0)
_ELLIPSE_POINTS = 64


def _run_of(meta: Mapping[str, Any]) -> RunSlide | None:
    """The run slide of a cytolt detections layer (from its layer state ``meta``), else None."""
    info = layer_info(meta.get("metadata") or {})
    return info.run if info is not None and info.role == "detections" else None


def write_points_geojson(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a points layer as QuPath GeoJSON; a cytolt detections layer via ``cytolt.store.to_geojson``."""
    run = _run_of(meta)
    if run is not None:
        with DetectionStore(run.store_path, readonly=True) as store:
            to_geojson(store, run.slide_id, path)
        return [path]
    pts = np.asarray(data, dtype=np.float64).reshape(-1, 2)
    rows = _feature_rows(meta, len(pts))
    features = []
    for i, (r, c) in enumerate(pts[:, -2:].tolist()):
        x, y = c + 0.5, r + 0.5
        geometry = {"type": "Point", "coordinates": [x, y]}
        features.append(_annotation(meta, i, geometry, rows[i]))
    Path(path).write_text(json.dumps(feature_collection(features)))
    return [path]


def write_shapes_geojson(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a shapes layer as QuPath GeoJSON annotations: polygons, rectangles and ellipses as Polygons,
    paths and lines as LineStrings (level-0 px)."""
    types = list(meta.get("shape_type") or ["polygon"] * len(data))
    rows = _feature_rows(meta, len(data))
    features = []
    for i, (verts, kind) in enumerate(zip(data, types, strict=True)):
        xy = _xy(verts)
        if kind in ("path", "line"):
            geometry = {"type": "LineString", "coordinates": xy.tolist()}
        else:
            ring = _ellipse_ring(xy) if kind == "ellipse" else xy
            ring = np.concatenate([ring, ring[:1]])
            geometry = {"type": "Polygon", "coordinates": [ring.tolist()]}
        features.append(_annotation(meta, i, geometry, rows[i]))
    Path(path).write_text(json.dumps(feature_collection(features)))
    return [path]


def write_points_csv(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a points layer as CSV: a detections layer via ``cytolt.store.to_csv`` (one row per detection,
    with its review), any other layer as ``x, y`` (level-0 px) plus its features."""
    run = _run_of(meta)
    if run is not None:
        with DetectionStore(run.store_path, readonly=True) as store:
            to_csv(store, run.slide_id, path)
        return [path]
    pts = np.asarray(data, dtype=np.float64).reshape(-1, 2)
    rows = _feature_rows(meta, len(pts))
    keys = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "y", *keys])
        for (r, c), row in zip(pts[:, -2:].tolist(), rows, strict=True):
            writer.writerow([f"{c + 0.5:.2f}", f"{r + 0.5:.2f}", *(row[k] for k in keys)])
    return [path]


def write_shapes_csv(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a shapes layer as CSV: one row per shape with its type, bounding box and ``x y;x y;...`` vertices."""
    types = list(meta.get("shape_type") or ["polygon"] * len(data))
    rows = _feature_rows(meta, len(data))
    keys = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["shape", "type", "x0", "y0", "x1", "y1", "vertices", *keys])
        for i, (verts, kind) in enumerate(zip(data, types, strict=True)):
            xy = _xy(verts)
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            vertices = ";".join(f"{x:.2f} {y:.2f}" for x, y in xy.tolist())
            box = [f"{v:.2f}" for v in (lo[0], lo[1], hi[0], hi[1])]
            writer.writerow([i, kind, *box, vertices, *(rows[i][k] for k in keys)])
    return [path]


def _xy(vertices: Any) -> np.ndarray:
    """(K, 2) x, y level-0 px from napari (row, column) vertices (extra leading dimensions dropped)."""
    v = np.asarray(vertices, dtype=np.float64)
    return v[:, [-1, -2]] + 0.5


def _ellipse_ring(corners: np.ndarray) -> np.ndarray:
    """Points on the ellipse inscribed in napari's 4 corner vertices (axis-aligned or rotated)."""
    centre = corners.mean(axis=0)
    a = (corners[1] - corners[0]) / 2  # half of one side
    b = (corners[3] - corners[0]) / 2  # half of the other
    t = np.linspace(0, 2 * math.pi, _ELLIPSE_POINTS, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b


def _feature_rows(meta: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """The layer's features as one JSON-safe dict per item ({} each when there are none)."""
    features = meta.get("features")
    if features is None or len(features) != n or len(getattr(features, "columns", ())) == 0:
        return [{} for _ in range(n)]
    out = []
    for rec in features.to_dict("records"):
        out.append({str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return out


def _annotation(
    meta: Mapping[str, Any], i: int, geometry: dict[str, Any], row: Mapping[str, Any]
) -> dict[str, Any]:
    measurements = {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    props: dict[str, Any] = {"objectType": "annotation", "measurements": measurements}
    name = row.get("class")
    if isinstance(name, str) and name:
        props["classification"] = {"name": name, "color": list(_ANNOTATION_COLOR)}
    key = f"{meta.get('name', '')}/{i}/{json.dumps(geometry['coordinates'])}"
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_NAMESPACE, key)),
        "geometry": geometry,
        "properties": props,
    }
