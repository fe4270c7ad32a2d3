"""Slide annotations in: QuPath GeoJSON, COCO and CSV read into plain records (level-0 pixels, class name).

Formats (docs/datasets.md):

- **QuPath GeoJSON** (``.geojson``, or ``.json`` holding one): a ``FeatureCollection``, a single ``Feature`` or a
  plain JSON list of features (QuPath's "Export objects as GeoJSON" without "FeatureCollection" ticked).
  Geometry ``Point`` / ``MultiPoint`` (one record per point), ``Polygon`` (rectangles and ellipses are polygons)
  and ``MultiPolygon`` (one record, its bounds). The class is ``properties.classification.name`` (or the
  ``names`` of a derived class joined with ``": "``); an object without one is :data:`UNCLASSIFIED`, as QuPath
  shows it. The object type is ``properties.objectType`` (QuPath >= 0.4) or the Feature ``id`` of older exports
  (``PathAnnotationObject`` ...). One file per slide: the slide is the file name without ``.geojson``/``.json``.
- **COCO** (``.json``): one image per slide, matched to the slide by its ``file_name``; ``bbox`` [x, y, w, h] in
  level-0 pixels; the class is the category's ``name``.
- **CSV** (``.csv``): a header with ``slide``, ``class`` and either ``x0, y0, x1, y1`` (a box) or ``x, y`` (a
  point), level-0 pixels; ``slide`` is a slide file name (or its stem).

Glossary
    box       (x0, y0, x1, y1) float level-0 px, origin top-left, x1 > x0 and y1 > y0; a point has x0 == x1, y0 == y1.
    slide     the key an annotation names its slide by: a file name, a stem, or a path (see :func:`slide_matches`).
    source    where a record came from: ``"<file>: feature 3"``, ``"<file>: line 12"``, ``"<file>: annotation 4 (id 9)"``.

Bad input raises :class:`~cytolt.datasets.coco.AnnotationError` naming the file, the entry and the problem.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytolt.datasets.coco import AnnotationError, check_coco, read_coco

__all__ = [
    "ANNOTATION_SUFFIXES",
    "OBJECT_TYPES",
    "UNCLASSIFIED",
    "SlideAnnotation",
    "read_annotations",
    "read_coco_annotations",
    "read_csv_annotations",
    "read_geojson",
    "slide_matches",
    "write_qupath_geojson",
]

# QuPath shows an object without a classification as "Unclassified"; a class map can map or drop that name.
UNCLASSIFIED = "Unclassified"
OBJECT_TYPES = ("annotation", "detection", "cell")
ANNOTATION_SUFFIXES = (".geojson", ".json", ".csv")
# QuPath before 0.4 wrote the object type as the Feature's id.
_LEGACY_TYPES = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
}
_CSV_BOX = ("x0", "y0", "x1", "y1")
_CSV_POINT = ("x", "y")


@dataclass(frozen=True)
class SlideAnnotation:
    """One annotated object on a slide: ``box`` (x0, y0, x1, y1) level-0 px (a point when ``is_point``, then
    x0 == x1 and y0 == y1), the lab's ``class_name``, the ``slide`` key, its ``source`` for error messages
    and QuPath's ``object_type``."""

    slide: str
    box: tuple[float, float, float, float]
    class_name: str
    source: str
    is_point: bool = False
    object_type: str = "annotation"

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


def slide_matches(key: str, slide_path: str | Path) -> bool:
    """Whether an annotation's slide ``key`` names ``slide_path``: the key's last path part equals the slide's
    file name, its stem or its name before the first dot (``a.ome.tiff`` is ``a.ome.tiff``, ``a.ome`` or ``a``)."""
    name = Path(slide_path).name
    return Path(key).name in {name, Path(name).stem, name.split(".")[0]}


def read_annotations(
    path: str | Path, *, slide: str | None = None, object_types: Sequence[str] = OBJECT_TYPES
) -> list[SlideAnnotation]:
    """Read one annotation file (format from its suffix and, for ``.json``, its content) or every
    ``.geojson``/``.json``/``.csv`` file directly inside a folder, in name order.

    ``slide`` names the slide of a GeoJSON file (default: the file name without ``.geojson``/``.json``);
    ``object_types`` are the QuPath object types kept (GeoJSON only).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES)
        if not files:
            raise AnnotationError(
                path, "", f"no annotation files ({', '.join(ANNOTATION_SUFFIXES)}) in this folder"
            )
        return [a for f in files for a in read_annotations(f, slide=slide, object_types=object_types)]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_annotations(path)
    if suffix not in (".geojson", ".json"):
        raise AnnotationError(
            path,
            "",
            f"unknown annotation format {suffix!r}; expected one of {', '.join(ANNOTATION_SUFFIXES)}",
        )
    doc = _read_json(path)
    if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
        return read_coco_annotations(path, doc=doc)
    return read_geojson(path, slide=slide, object_types=object_types, doc=doc)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise AnnotationError(path, "", "annotation file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"line {err.lineno}", f"not valid JSON ({err.msg})") from err


def _geojson_slide_key(path: Path) -> str:
    name = path.name
    for suffix in (".geojson", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------------------------- GeoJSON
def read_geojson(
    path: str | Path,
    *,
    slide: str | None = None,
    object_types: Sequence[str] = OBJECT_TYPES,
    doc: Any = None,
) -> list[SlideAnnotation]:
    """Records of a QuPath GeoJSON file (module docstring); ``doc`` is its already parsed content, if read."""
    path = Path(path)
    doc = _read_json(path) if doc is None else doc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise AnnotationError(path, "", "a FeatureCollection needs a 'features' list")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise AnnotationError(
            path, "", "expected a GeoJSON FeatureCollection, a Feature, a list of Features or a COCO file"
        )
    key = slide if slide is not None else _geojson_slide_key(path)
    out: list[SlideAnnotation] = []
    for i, feature in enumerate(features):
        entry = f"feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AnnotationError(path, entry, 'not a GeoJSON Feature (an object with "type": "Feature")')
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise AnnotationError(path, entry, "properties must be a JSON object")
        object_type = _object_type(feature, props, path, entry)
        if object_type not in object_types:
            continue
        name = _class_name(props.get("classification"), path, entry)
        for sub, box, is_point in _geometry_boxes(feature.get("geometry"), path, entry):
            out.append(
                SlideAnnotation(
                    slide=key,
                    box=box,
                    class_name=name,
                    source=f"{path}: {entry}{sub}",
                    is_point=is_point,
                    object_type=object_type,
                )
            )
    return out


def _object_type(feature: Mapping[str, Any], props: Mapping[str, Any], path: Path, entry: str) -> str:
    value = props.get("objectType")
    if value is None:
        # QuPath < 0.4 named the type in the Feature's id; an object with no type imports as an annotation.
        return _LEGACY_TYPES.get(str(feature.get("id")), "annotation")
    if not isinstance(value, str):
        raise AnnotationError(path, entry, f"properties.objectType must be a string; got {value!r}")
    return value


def _class_name(classification: Any, path: Path, entry: str) -> str:
    if classification is None:
        return UNCLASSIFIED
    if isinstance(classification, str):
        return classification or UNCLASSIFIED
    if not isinstance(classification, dict):
        raise AnnotationError(
            path, entry, f"properties.classification must be an object; got {classification!r}"
        )
    name = classification.get("name")
    if name is None and isinstance(classification.get("names"), list):
        name = ": ".join(str(n) for n in classification["names"])
    if not isinstance(name, str):
        raise AnnotationError(
            path, entry, f"properties.classification has no 'name' string; got {classification!r}"
        )
    return name or UNCLASSIFIED


def _geometry_boxes(
    geometry: Any, path: Path, entry: str
) -> list[tuple[str, tuple[float, float, float, float], bool]]:
    """(suffix for the source, box, is_point) per object of a GeoJSON geometry."""
    if not isinstance(geometry, dict):
        raise AnnotationError(path, entry, "no geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Point":
        x, y = _point(coords, path, entry)
        return [("", (x, y, x, y), True)]
    if kind == "MultiPoint":
        if not isinstance(coords, list) or not coords:
            raise AnnotationError(path, entry, "a MultiPoint needs a non-empty list of points")
        out = []
        for j, c in enumerate(coords):
            x, y = _point(c, path, f"{entry} point {j}")
            out.append((f" point {j}", (x, y, x, y), True))
        return out
    if kind in ("Polygon", "MultiPolygon"):
        polygons = [coords] if kind == "Polygon" else coords
        if not isinstance(polygons, list) or not polygons:
            raise AnnotationError(path, entry, f"a {kind} needs coordinates")
        xs: list[float] = []
        ys: list[float] = []
        for polygon in polygons:
            if not isinstance(polygon, list) or not polygon or not isinstance(polygon[0], list):
                raise AnnotationError(path, entry, f"{kind} coordinates must be lists of rings of [x, y]")
            if len(polygon[0]) < 4:
                raise AnnotationError(
                    path, entry, f"a polygon ring needs at least 4 points; got {len(polygon[0])}"
                )
            for point in polygon[0]:  # the exterior ring bounds the object; holes lie inside it
                x, y = _point(point, path, entry)
                xs.append(x)
                ys.append(y)
        box = (min(xs), min(ys), max(xs), max(ys))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise AnnotationError(path, entry, f"{kind} has no area (bounds {list(box)})")
        return [("", box, False)]
    raise AnnotationError(
        path, entry, f"geometry {kind!r} cannot mark a cell; use Point, MultiPoint, Polygon or MultiPolygon"
    )


def _point(value: Any, path: Path, entry: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) < 2
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value[:2]
        )
    ):
        raise AnnotationError(path, entry, f"a position must be [x, y] finite numbers; got {value!r}")
    return float(value[0]), float(value[1])


# ----------------------------------------------------------------------------------------------- COCO
def read_coco_annotations(path: str | Path, *, doc: Mapping[str, Any] | None = None) -> list[SlideAnnotation]:
    """Records of a COCO file whose images are whole slides (level-0 ``bbox``; the slide is the ``file_name``).

    The file is checked with :func:`~cytolt.datasets.coco.check_coco` first (ids, boxes inside the image when
    it has a size, known categories); an image without annotations is allowed, a file without any is not.
    """
    path = Path(path)
    doc = read_coco(path) if doc is None else doc
    check_coco(doc, source=path, allow_empty=True)
    if not doc["annotations"]:
        raise AnnotationError(path, "", "no annotations")
    names = {c["id"]: str(c["name"]) for c in doc["categories"]}
    slides: dict[Any, str] = {}
    for k, img in enumerate(doc["images"]):
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise AnnotationError(path, f"image {k} (id {img['id']})", "no 'file_name' to match a slide by")
        slides[img["id"]] = name
    out = []
    for k, ann in enumerate(doc["annotations"]):
        x, y, w, h = (float(v) for v in ann["bbox"])
        out.append(
            SlideAnnotation(
                slide=slides[ann["image_id"]],
                box=(x, y, x + w, y + h),
                class_name=names[ann["category_id"]],
                source=f"{path}: annotation {k} (id {ann['id']})",
            )
        )
    return out


# ----------------------------------------------------------------------------------------------- CSV
def read_csv_annotations(path: str | Path) -> list[SlideAnnotation]:
    """Records of a CSV file with columns ``slide, x0, y0, x1, y1, class`` or ``slide, x, y, class`` (any order,
    any case, extra columns ignored); level-0 px. Line numbers in errors count the header as line 1."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "", "annotation file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise AnnotationError(path, "", "empty file (expected a header row)")
        columns = {name.strip().lower(): k for k, name in enumerate(header)}
        if _CSV_BOX[0] in columns:
            coord_names = _CSV_BOX
        elif _CSV_POINT[0] in columns:
            coord_names = _CSV_POINT
        else:
            coord_names = _CSV_BOX
        missing = [c for c in ("slide", "class", *coord_names) if c not in columns]
        if missing:
            raise AnnotationError(
                path,
                "line 1",
                f"header lacks {missing}; expected slide, x0, y0, x1, y1, class (boxes) or slide, x, y, class "
                f"(points); got {header}",
            )
        out = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            entry = f"line {line}"
            if len(row) < len(header):
                raise AnnotationError(path, entry, f"{len(row)} fields; the header has {len(header)}")
            values = [_csv_number(row[columns[c]], c, path, entry) for c in coord_names]
            slide, name = row[columns["slide"]].strip(), row[columns["class"]].strip()
            if not slide or not name:
                raise AnnotationError(path, entry, "empty slide or class")
            if coord_names == _CSV_POINT:
                box = (values[0], values[1], values[0], values[1])
            else:
                box = (values[0], values[1], values[2], values[3])
                if box[2] <= box[0] or box[3] <= box[1]:
                    raise AnnotationError(
                        path, entry, f"box {list(box)} has no area (need x1 > x0 and y1 > y0)"
                    )
            out.append(
                SlideAnnotation(
                    slide=slide,
                    box=box,
                    class_name=name,
                    source=f"{path}: {entry}",
                    is_point=coord_names == _CSV_POINT,
                )
            )
    return out


def _csv_number(text: str, column: str, path: Path, entry: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, entry, f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(path, entry, f"{column} {text!r} is not a finite number")
    return value


# ----------------------------------------------------------------------------------------------- writing
def write_qupath_geojson(
    path: str | os.PathLike[str],
    boxes: Iterable[Sequence[float]],
    class_names: Sequence[str],
    *,
    object_type: str = "annotation",
    colors: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Write level-0 xyxy ``boxes`` with their ``class_names`` as a QuPath GeoJSON FeatureCollection of
    rectangles (also returned); it passes :func:`cytolt.store.geojson.check_qupath_geojson`.

    Feature ids are uuid5 of the file name and the box index, so writing again gives the same ids. Colours
    come from ``colors`` (class name -> RGB), else Tableau 10 in order of first appearance.
    """
    # Imported here: the cytolt.store package imports torch, which reading annotations never needs.
    from cytolt.store.geojson import DEFAULT_COLORS, detection_feature, detection_uuid, feature_collection

    path = Path(path)
    palette: dict[str, tuple[int, ...]] = {k: tuple(int(c) for c in v) for k, v in (colors or {}).items()}
    features = []
    box_list = [tuple(float(v) for v in b) for b in boxes]
    if len(box_list) != len(class_names):
        raise ValueError(f"boxes and class_names differ in length: {len(box_list)} and {len(class_names)}")
    for i, (box, name) in enumerate(zip(box_list, class_names, strict=True)):
        color = palette.setdefault(name, DEFAULT_COLORS[len(palette) % len(DEFAULT_COLORS)])
        features.append(
            detection_feature(
                feature_id=detection_uuid(path.name, str(i)),
                box=box,
                class_name=name,
                color=color,
                measurements={},
                object_type=object_type,
            )
        )
    doc = feature_collection(features)
    path.write_text(json.dumps(doc))
    return doc
