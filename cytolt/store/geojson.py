"""QuPath GeoJSON (v0.4 and later): build detection features and check a document against QuPath's rules.

Rules (docs/store.md; DOMAIN.md "QuPath GeoJSON"):

- a ``FeatureCollection`` of ``Feature`` objects, coordinates in level-0 pixels, origin top-left;
- each Feature has ``"id"``: a UUID string;
- ``properties.objectType`` is ``"annotation"``, ``"detection"`` or ``"cell"`` (in ``properties``: an object
  without it imports as an annotation);
- ``properties.classification`` is ``{"name": str, "color": [r, g, b]}`` with 0-255 integers;
- numbers go in ``properties.measurements`` as ``{name: number}``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_COLORS",
    "OBJECT_TYPES",
    "box_polygon",
    "check_qupath_geojson",
    "detection_feature",
    "detection_uuid",
    "feature_collection",
]

OBJECT_TYPES = ("annotation", "detection", "cell")

# Tableau 10 (matplotlib's "tab10"), cycled by label index when no colour is given for a class.
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

# Fixed namespace so a detection's Feature id is the same in every export of the same slide and model output.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/cytolt/cytolt/detection")


def detection_uuid(slide_uid: str, key: str) -> str:
    """Deterministic UUID (version 5) of a detection from its slide's identity and its detection key."""
    return str(uuid.uuid5(_NAMESPACE, f"{slide_uid}/{key}"))


def box_polygon(box: Sequence[float]) -> dict[str, Any]:
    """GeoJSON Polygon of an xyxy box: one closed, clockwise-in-image ring of 5 points (level-0 px)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def detection_feature(
    *,
    feature_id: str,
    box: Sequence[float],
    class_name: str,
    color: Sequence[int],
    measurements: Mapping[str, float],
    object_type: str = "detection",
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One QuPath Feature for a box; ``extra`` adds JSON-safe properties (QuPath keeps them unread)."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(
            f"object_type must be one of {', '.join(map(repr, OBJECT_TYPES))}; got {object_type!r}"
        )
    properties: dict[str, Any] = {
        "objectType": object_type,
        "classification": {"name": class_name, "color": [int(c) for c in color]},
        "measurements": {k: float(v) for k, v in measurements.items()},
    }
    if name is not None:
        properties["name"] = name
    if extra:
        properties.update(extra)
    return {"type": "Feature", "id": feature_id, "geometry": box_polygon(box), "properties": properties}


def feature_collection(features: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def check_qupath_geojson(doc: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first feature that breaks a QuPath rule; geometry is checked with shapely."""
    from shapely.geometry import shape

    if doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise ValueError("GeoJSON: top level must be a FeatureCollection with a 'features' list")
    seen: set[str] = set()
    for i, f in enumerate(doc["features"]):
        where = f"GeoJSON feature {i}"
        if f.get("type") != "Feature":
            raise ValueError(f"{where}: type must be 'Feature'; got {f.get('type')!r}")
        fid = f.get("id")
        if not _is_uuid(fid):
            raise ValueError(f"{where}: 'id' must be a UUID string; got {fid!r}")
        if fid in seen:
            raise ValueError(f"{where}: duplicate id {fid}")
        seen.add(fid)
        if "objectType" in f:
            raise ValueError(f"{where}: objectType belongs in properties, not at the Feature level")
        props = f.get("properties")
        if not isinstance(props, Mapping):
            raise ValueError(f"{where}: missing properties")
        if props.get("objectType") not in OBJECT_TYPES:
            raise ValueError(f"{where}: properties.objectType must be one of {OBJECT_TYPES}")
        cls = props.get("classification")
        if cls is not None:
            color = cls.get("color") if isinstance(cls, Mapping) else None
            if (
                not isinstance(cls.get("name"), str)
                or not isinstance(color, list)
                or len(color) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in color)
            ):
                raise ValueError(f"{where}: classification must be {{'name': str, 'color': [r, g, b] 0-255}}")
        meas = props.get("measurements", {})
        if not isinstance(meas, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int | float) and math.isfinite(v) for k, v in meas.items()
        ):
            raise ValueError(f"{where}: measurements must map names to finite numbers")
        try:
            geom = shape(f["geometry"])
        except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad input
            raise ValueError(f"{where}: geometry is not valid GeoJSON ({exc})") from exc
        if geom.is_empty or not geom.is_valid:
            raise ValueError(f"{where}: geometry is empty or invalid")


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
