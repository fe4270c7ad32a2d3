"""Build a COCO + LVIS training set from annotated whole slides (``cytolt dataset build``).

Layout written by :func:`build_dataset` into ``out``::

    images/<slide stem>_<n>.jpg        patches of ``size`` px at ``mpp`` um/px
    annotations_{train,val,test}.json  COCO with the LVIS fields (a split with a zero fraction is not written)
    classes.md, classes.csv            per class: frequency group, slides, instances and images per split
    examples.jpg                       a row of example cells per class (and one of background patches)
    class_map.json                     the class map used, so the set can be built again

Images carry, besides the COCO fields, ``slide`` (the slide's file name), ``origin_l0`` and ``scale_l0`` (a
patch pixel (u, v) is level-0 (x0 + u * sx, y0 + v * sy)), ``mpp`` and ``kind`` ('annotation' or
'background'). With ``exhaustive=True`` (every cell of the annotated kinds is annotated, as in cytolt's
synthetic ground truth) a patch's ``neg_category_ids`` are the classes it does not show, less those of a box
cut by its edge, which go to ``not_exhaustive_category_ids``; with ``exhaustive=False`` no class is a
negative and the classes present are not exhaustive (LVIS then scores only those).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from cytolt import __version__
from cytolt.datasets.annotations import SlideAnnotation, read_annotations, slide_matches
from cytolt.datasets.class_map import ClassMap, class_map_from_names, load_class_map
from cytolt.datasets.coco import (
    AnnotationError,
    check_coco,
    check_splits,
    class_table,
    with_lvis_fields,
)
from cytolt.datasets.patches import MIN_TISSUE, MIN_VISIBLE, Patch, extract_patches
from cytolt.datasets.split import SPLIT_NAMES, check_fractions, split_slides
from cytolt.io import open_slide

__all__ = [
    "IMAGE_FORMATS",
    "ClassSplitRow",
    "DatasetSummary",
    "SlideBoxes",
    "build_dataset",
    "coco_categories",
    "example_grid",
    "patch_records",
    "slide_boxes",
    "write_coco_split",
]

IMAGE_FORMATS = ("jpg", "png")
# examples.jpg: cells per class row and the side of each cell's tile (px).
EXAMPLES_PER_CLASS = 8
EXAMPLE_TILE = 96
BOX_COLOR = (255, 200, 0)  # amber: stands out on pink and blue-green Papanicolaou stains


@dataclass(frozen=True)
class SlideBoxes:
    """A slide's training boxes: ``boxes`` (N, 4) float64 xyxy level-0 px inside the slide, ``labels`` (N,)
    int64, ``clipped`` how many were cut back to the slide's edge."""

    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    clipped: int = 0


@dataclass(frozen=True)
class ClassSplitRow:
    """One class of the built set: LVIS group (from train), slides holding it, instances and images per split."""

    name: str
    group: str
    slides: int
    instances: dict[str, int]
    images: dict[str, int]


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`build_dataset` wrote (paths under ``out_dir``) and counted."""

    out_dir: Path
    classes: tuple[str, ...]
    splits: dict[str, tuple[str, ...]]
    annotation_files: dict[str, Path]
    images: dict[str, int]
    background_images: dict[str, int]
    rows: tuple[ClassSplitRow, ...]
    mpp: float
    size: int
    dropped_null: dict[str, int] = field(default_factory=dict)
    dropped_unmapped: dict[str, int] = field(default_factory=dict)
    clipped_to_slide: int = 0
    not_whole: int = 0
    table_files: tuple[Path, ...] = ()
    examples: Path | None = None

    def table_markdown(self) -> str:
        """The per-class table as Markdown."""
        return _table_markdown(self.rows, tuple(self.annotation_files))

    def format(self) -> str:
        """A few lines for the terminal: splits, counts, the class table and what was dropped."""
        lines = [f"dataset: {self.out_dir} ({self.size} px patches at {self.mpp:g} um/px)"]
        for s, slides in self.splits.items():
            lines.append(
                f"{s}: {len(slides)} slide(s), {self.images[s]} patches ({self.background_images[s]} background)"
                f" -> {self.annotation_files[s]}"
            )
        lines += ["", self.table_markdown(), ""]
        for what, counts in (("mapped to null", self.dropped_null), ("unmapped", self.dropped_unmapped)):
            if counts:
                named = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items()))
                lines.append(f"dropped, {what}: {named}")
        if self.clipped_to_slide:
            lines.append(f"boxes cut back to the slide edge: {self.clipped_to_slide}")
        if self.not_whole:
            lines.append(f"boxes larger than a patch (kept clipped): {self.not_whole}")
        if self.examples is not None:
            lines.append(f"examples: {self.examples}")
        return "\n".join(lines)


def coco_categories(classes: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories of the training classes: ids 1..C in label order."""
    return [{"id": k + 1, "name": name, "supercategory": "cell"} for k, name in enumerate(classes)]


def slide_boxes(
    path: Path,
    size: tuple[int, int],
    mpp: tuple[float, float],
    annotations: Sequence[tuple[SlideAnnotation, int]],
    class_map: ClassMap,
) -> SlideBoxes:
    """Level-0 boxes of a slide's (annotation, label) pairs: a point becomes a square of the class map's
    ``box_um`` for its class, boxes are cut back to the slide; one wholly outside is an AnnotationError."""
    width, height = size
    boxes = np.zeros((len(annotations), 4), np.float64)
    labels = np.zeros(len(annotations), np.int64)
    clipped = 0
    for i, (ann, label) in enumerate(annotations):
        x0, y0, x1, y1 = ann.box
        if ann.is_point:
            half_w = class_map.box_um(class_map.classes[label]) / mpp[0] / 2
            half_h = class_map.box_um(class_map.classes[label]) / mpp[1] / 2
            x0, y0, x1, y1 = x0 - half_w, y0 - half_h, x1 + half_w, y1 + half_h
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height or (ann.is_point and not _inside(ann.box, size)):
            raise AnnotationError(
                ann.source, "", f"{list(ann.box)} lies outside the slide {path.name} ({width} x {height} px)"
            )
        box = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        clipped += box != (x0, y0, x1, y1)
        boxes[i], labels[i] = box, label
    return SlideBoxes(path=path, boxes=boxes, labels=labels, clipped=int(clipped))


def _inside(box: Sequence[float], size: tuple[int, int]) -> bool:
    return 0 <= box[0] <= size[0] and 0 <= box[1] <= size[1]


def patch_records(
    patch: Patch,
    *,
    image_id: int,
    first_annotation_id: int,
    file_name: str,
    slide_name: str,
    mpp: float,
    num_classes: int,
    exhaustive: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO image record (with the LVIS per-image fields, module docstring) and annotation records of a
    patch; annotation ids count up from ``first_annotation_id``, category ids are labels + 1."""
    present = sorted({int(c) + 1 for c in patch.labels})
    cut = sorted({int(c) + 1 for c in patch.not_exhaustive} - set(present))
    if exhaustive:
        neg = [c for c in range(1, num_classes + 1) if c not in present and c not in cut]
        not_exhaustive = cut
    else:
        neg, not_exhaustive = [], sorted(set(present) | set(cut))
    image = {
        "id": image_id,
        "file_name": file_name,
        "coco_url": file_name,  # mmdet's LVISV1Dataset and detectron2 read the file from coco_url
        "width": patch.window.size,
        "height": patch.window.size,
        "slide": slide_name,
        "origin_l0": [round(v, 4) for v in patch.window.origin],
        "scale_l0": [round(v, 6) for v in patch.window.scale],
        "mpp": mpp,
        "kind": patch.kind,
        "neg_category_ids": neg,
        "not_exhaustive_category_ids": not_exhaustive,
    }
    annotations = []
    for k, (box, label) in enumerate(zip(patch.boxes.tolist(), patch.labels.tolist(), strict=True)):
        x0, y0, x1, y1 = (round(v, 3) for v in box)
        if x1 <= x0 or y1 <= y0:
            continue
        annotations.append(
            {
                "id": first_annotation_id + k,
                "image_id": image_id,
                "category_id": int(label) + 1,
                "bbox": [x0, y0, round(x1 - x0, 3), round(y1 - y0, 3)],
                "area": round((x1 - x0) * (y1 - y0), 3),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                "iscrowd": 0,
            }
        )
    return image, annotations


def write_coco_split(
    path: str | Path,
    images: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    *,
    train: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    image_root: str | Path | None = None,
) -> dict[str, Any]:
    """Write one split as COCO + LVIS and return the document.

    ``images`` / ``annotations`` are COCO records (:func:`patch_records`); categories are ids 1..C in the order
    of ``classes``. LVIS fields come from :func:`~cytolt.datasets.coco.with_lvis_fields` (counts and
    frequency groups from ``train``, the training split's document; None for the training split itself).
    The document is checked with :func:`~cytolt.datasets.coco.check_coco` (image files under ``image_root``,
    default the file's folder) before it is written, so a broken split never reaches disk.
    """
    path = Path(path)
    doc = {
        "info": dict(info or {}),
        "licenses": [],
        "images": list(images),
        "annotations": list(annotations),
        "categories": coco_categories(classes),
    }
    doc = with_lvis_fields(doc, train=train)
    check_coco(doc, source=path, image_root=path.parent if image_root is None else image_root)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return doc


def build_dataset(
    slides: Sequence[str | Path],
    annotations: Sequence[str | Path] | Sequence[SlideAnnotation],
    out: str | Path,
    *,
    class_map: ClassMap | str | Path | None = None,
    mpp: float = 0.5,
    size: int = 512,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    slide_mpp: float | None = None,
    drop_unmapped: bool = False,
    background: float = 0.25,
    min_background: int = 1,
    min_visible: float = MIN_VISIBLE,
    min_tissue: float = MIN_TISSUE,
    exhaustive: bool = True,
    image_format: str = "jpg",
    quality: int = 90,
    progress: bool = False,
) -> DatasetSummary:
    """Build a training set from ``slides`` and their ``annotations`` (module docstring for the layout).

    Args:
        slides: slide files; annotation records name their slide by file name or stem.
        annotations: annotation files or folders (QuPath GeoJSON, COCO, CSV: :mod:`cytolt.datasets.annotations`)
            or records already read.
        out: the output folder; it must not hold a dataset already.
        class_map: a :class:`ClassMap` or its file; None maps every annotation name to itself (sorted).
        mpp: microns per pixel of the patches; size: their side in px.
        splits: (train, val, test) fractions of the slides (:func:`~cytolt.datasets.split.split_slides`).
        seed: seeds the split and the background windows.
        slide_mpp: microns per level-0 pixel for slides that lack it (or whose metadata is wrong): all slides.
        drop_unmapped: drop annotation names the class map does not map instead of refusing them.
        background, min_background, min_visible, min_tissue: :func:`~cytolt.datasets.patches.extract_patches`.
        exhaustive: every object of the training classes on the slides is annotated (sets the LVIS negatives).
        image_format: 'jpg' (``quality``) or 'png'.
    Raises:
        AnnotationError: a bad annotation or class map file, an annotation that names no slide or lies off its
            slide, unmapped names (:class:`~cytolt.datasets.class_map.UnmappedClassError`), a split without
            annotations; SlideError: an unreadable slide or one without mpp.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}; got {image_format!r}")
    fractions = check_fractions(splits)
    slide_paths = [Path(s) for s in slides]
    if not slide_paths:
        raise ValueError("no slides given")
    names = [p.name for p in slide_paths]
    if len(set(names)) != len(names):
        raise ValueError(
            f"slide file names must be unique (they name the slides in the dataset); got {names}"
        )
    out = Path(out)
    if (out / "images").is_dir() and any((out / "images").iterdir()):
        raise FileExistsError(f"{out} already holds a dataset (images/ is not empty); choose a new folder")

    records = _read_all(annotations)
    cmap = _resolve_class_map(class_map, records)
    mapped = cmap.apply(records, drop_unmapped=drop_unmapped)
    per_slide = _match_slides(mapped.kept, slide_paths)
    geometry = {}
    for path in slide_paths:
        with open_slide(path, mpp=slide_mpp) as slide:
            if slide.mpp is None:
                raise AnnotationError(path, "", "the slide records no microns per pixel; give it with --mpp")
            geometry[path] = (slide.dimensions, slide.mpp)
    boxes = {p: slide_boxes(p, *geometry[p], per_slide[p], cmap) for p in slide_paths}

    assignment = split_slides({p.name: b.labels.tolist() for p, b in boxes.items()}, fractions, seed=seed)
    active = [s for s, f in zip(SPLIT_NAMES, fractions, strict=True) if f > 0]
    for s in active:
        if not assignment[s]:
            taken = {k: v for k, v in assignment.items() if v}
            raise ValueError(
                f"split {s!r} got no slide: the {len(names)} slides went to {taken}, each class's rarest slides to "
                "the training split first; give more slides or a split without it (e.g. --split 0.8,0.2,0)"
            )
        if not any(len(boxes[_by_name(slide_paths, n)].labels) for n in assignment[s]):
            raise AnnotationError(
                out / f"annotations_{s}.json",
                "",
                f"empty split: its slides {assignment[s]} hold no annotation; give more annotated slides or "
                f"change --split",
            )

    (out / "images").mkdir(parents=True, exist_ok=True)
    examples = _Examples(len(cmap.classes), seed=seed)
    split_records: dict[str, tuple[list, list]] = {s: ([], []) for s in active}
    background_count = dict.fromkeys(active, 0)
    not_whole = 0
    image_id = annotation_id = 0
    bar = tqdm(desc="patches", unit="patch", disable=not progress)
    for s in active:
        for name in assignment[s]:
            path = _by_name(slide_paths, name)
            sb = boxes[path]
            seen_whole = np.zeros(len(sb.labels), bool)
            with open_slide(path, mpp=slide_mpp) as slide:
                for n, patch in enumerate(
                    extract_patches(
                        slide,
                        sb.boxes,
                        sb.labels,
                        mpp_out=mpp,
                        size=size,
                        min_visible=min_visible,
                        background=background,
                        min_background=min_background,
                        min_tissue=min_tissue,
                        seed=(seed, slide_paths.index(path)),
                    )
                ):
                    image_id += 1
                    file_name = f"images/{Path(name).stem}_{n:05d}.{image_format}"
                    write_image(out / file_name, patch.image, image_format, quality)
                    image, anns = patch_records(
                        patch,
                        image_id=image_id,
                        first_annotation_id=annotation_id + 1,
                        file_name=file_name,
                        slide_name=name,
                        mpp=mpp,
                        num_classes=len(cmap.classes),
                        exhaustive=exhaustive,
                    )
                    annotation_id += len(patch.labels)
                    split_records[s][0].append(image)
                    split_records[s][1].extend(anns)
                    background_count[s] += patch.kind == "background"
                    seen_whole[patch.index[patch.whole]] = True
                    examples.add(patch)
                    bar.update()
            not_whole += int((~seen_whole).sum())
    bar.close()

    info = {
        "description": "cytolt dataset from annotated slides",
        "version": __version__,
        "mpp": mpp,
        "size": size,
    }
    files: dict[str, Path] = {}
    docs: dict[str, dict[str, Any]] = {}
    for s in active:
        files[s] = out / f"annotations_{s}.json"
        docs[s] = write_coco_split(
            files[s],
            *split_records[s],
            cmap.classes,
            train=docs.get("train"),
            info={**info, "split": s, "slides": assignment[s], "seed": seed},
        )
    check_splits(
        docs["train"], {str(files[s]): docs[s] for s in active[1:]}, train_source=str(files["train"])
    )

    rows = _class_rows(docs, cmap.classes, boxes)
    table_files = (out / "classes.md", out / "classes.csv")
    table_files[0].write_text(_table_markdown(rows, tuple(active)) + "\n")
    table_files[1].write_text(_table_csv(rows, tuple(active)))
    (out / "class_map.json").write_text(json.dumps(cmap.to_dict(), indent=2) + "\n")
    examples_path = out / "examples.jpg"
    write_image(examples_path, example_grid(examples.rows(cmap.classes)), "jpg", 90)
    return DatasetSummary(
        out_dir=out,
        classes=cmap.classes,
        splits={s: tuple(assignment[s]) for s in active},
        annotation_files=files,
        images={s: len(split_records[s][0]) for s in active},
        background_images=background_count,
        rows=rows,
        mpp=mpp,
        size=size,
        dropped_null=mapped.dropped_null,
        dropped_unmapped=mapped.dropped_unmapped,
        clipped_to_slide=sum(b.clipped for b in boxes.values()),
        not_whole=not_whole,
        table_files=table_files,
        examples=examples_path,
    )


def _read_all(annotations: Sequence[str | Path] | Sequence[SlideAnnotation]) -> list[SlideAnnotation]:
    records: list[SlideAnnotation] = []
    for item in annotations:
        records += [item] if isinstance(item, SlideAnnotation) else read_annotations(item)
    if not records:
        raise AnnotationError("annotations", "", "no annotations in the files given")
    return records


def _resolve_class_map(
    class_map: ClassMap | str | Path | None, records: Sequence[SlideAnnotation]
) -> ClassMap:
    if class_map is None:
        return class_map_from_names(r.class_name for r in records)
    if isinstance(class_map, ClassMap):
        return class_map
    return load_class_map(class_map)


def _by_name(paths: Sequence[Path], name: str) -> Path:
    return next(p for p in paths if p.name == name)


def _match_slides(
    kept: Sequence[tuple[SlideAnnotation, int]], slides: Sequence[Path]
) -> dict[Path, list[tuple[SlideAnnotation, int]]]:
    """Each (annotation, label) under the one slide its key names (:func:`slide_matches`)."""
    out: dict[Path, list[tuple[SlideAnnotation, int]]] = {p: [] for p in slides}
    cache: dict[str, Path] = {}
    for ann, label in kept:
        if ann.slide not in cache:
            hits = [p for p in slides if slide_matches(ann.slide, p)]
            if len(hits) != 1:
                given = ", ".join(p.name for p in slides[:8]) + (" ..." if len(slides) > 8 else "")
                problem = (
                    f"names slide {ann.slide!r}, which is none of the slides given ({given})"
                    if not hits
                    else f"slide {ann.slide!r} is ambiguous: it names {[p.name for p in hits]}"
                )
                raise AnnotationError(ann.source, "", problem)
            cache[ann.slide] = hits[0]
        out[cache[ann.slide]].append((ann, label))
    return out


def _class_rows(
    docs: Mapping[str, Mapping[str, Any]], classes: Sequence[str], boxes: Mapping[Path, SlideBoxes]
) -> tuple[ClassSplitRow, ...]:
    tables = {s: class_table(doc) for s, doc in docs.items()}
    slides = [sum(bool((b.labels == k).any()) for b in boxes.values()) for k in range(len(classes))]
    return tuple(
        ClassSplitRow(
            name=name,
            group=tables["train"][k].group,
            slides=slides[k],
            instances={s: t[k].instances for s, t in tables.items()},
            images={s: t[k].images for s, t in tables.items()},
        )
        for k, name in enumerate(classes)
    )


def _table_header(splits: Sequence[str]) -> list[str]:
    return ["class", "group", "slides", *(f"{s} {what}" for s in splits for what in ("instances", "images"))]


def _table_cells(row: ClassSplitRow, splits: Sequence[str]) -> list[str]:
    counts = [str(c) for s in splits for c in (row.instances[s], row.images[s])]
    return [row.name, row.group, str(row.slides), *counts]


def _table_markdown(rows: Sequence[ClassSplitRow], splits: Sequence[str]) -> str:
    header = _table_header(splits)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    lines += ["| " + " | ".join(_table_cells(r, splits)) + " |" for r in rows]
    lines.append("")
    lines.append("group: LVIS frequency from training images (r 1-10 or none, c 11-100, f > 100)")
    return "\n".join(lines)


def _table_csv(rows: Sequence[ClassSplitRow], splits: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([h.replace(" ", "_") for h in _table_header(splits)])
    writer.writerows(_table_cells(r, splits) for r in rows)
    return buf.getvalue()


def write_image(path: Path, image: np.ndarray, image_format: str, quality: int) -> None:
    """Write an (H, W, 3) uint8 RGB image as 'jpg' (``quality``) or 'png'."""
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        if image_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    ok, buf = cv2.imencode(f".{image_format}", np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


# ----------------------------------------------------------------------------------------------- examples
class _Examples:
    """A seeded reservoir (Vitter's algorithm R) of up to EXAMPLES_PER_CLASS whole cells per class, as tiles."""

    def __init__(self, num_classes: int, *, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 0xE4A])
        self.tiles: list[list[np.ndarray]] = [[] for _ in range(num_classes + 1)]  # last row: background
        self.seen = [0] * (num_classes + 1)

    def _offer(self, row: int, make_tile: Any) -> None:
        self.seen[row] += 1
        if len(self.tiles[row]) < EXAMPLES_PER_CLASS:
            self.tiles[row].append(make_tile())
        else:
            j = int(self.rng.integers(self.seen[row]))
            if j < EXAMPLES_PER_CLASS:
                self.tiles[row][j] = make_tile()

    def add(self, patch: Patch) -> None:
        if patch.kind == "background":
            self._offer(
                -1,
                lambda: cv2.resize(patch.image, (EXAMPLE_TILE, EXAMPLE_TILE), interpolation=cv2.INTER_AREA),
            )
            return
        for box, label, whole in zip(patch.boxes, patch.labels.tolist(), patch.whole.tolist(), strict=True):
            if whole:
                self._offer(label, lambda box=box: _cell_tile(patch.image, box))

    def rows(self, classes: Sequence[str]) -> list[tuple[str, list[np.ndarray]]]:
        background = [("background", self.tiles[-1])] if self.tiles[-1] else []
        return [(c, self.tiles[k]) for k, c in enumerate(classes)] + background


def _cell_tile(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """An EXAMPLE_TILE square around ``box`` (patch px) with 30% context, the box drawn in BOX_COLOR."""
    x0, y0, x1, y1 = box.tolist()
    side = max(x1 - x0, y1 - y0, 8.0) * 1.3
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a, b = math.floor(cx - side / 2), math.floor(cy - side / 2)
    n = math.ceil(side)
    h, w = image.shape[:2]
    crop = np.full((n, n, 3), 255, np.uint8)
    sx0, sy0, sx1, sy1 = max(a, 0), max(b, 0), min(a + n, w), min(b + n, h)
    crop[sy0 - b : sy1 - b, sx0 - a : sx1 - a] = image[sy0:sy1, sx0:sx1]
    tile = cv2.resize(crop, (EXAMPLE_TILE, EXAMPLE_TILE), interpolation=cv2.INTER_AREA)
    f = EXAMPLE_TILE / n
    p0 = (int((x0 - a) * f), int((y0 - b) * f))
    p1 = (int((x1 - a) * f), int((y1 - b) * f))
    cv2.rectangle(tile, p0, p1, BOX_COLOR, 1)
    return tile


def example_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]]) -> np.ndarray:
    """(H, W, 3) uint8 picture: one row per (name, tiles) with the name on the left; tiles EXAMPLE_TILE px."""
    pad, font, scale = 4, cv2.FONT_HERSHEY_SIMPLEX, 0.5
    label_width = max([cv2.getTextSize(name, font, scale, 1)[0][0] for name, _ in rows] + [40]) + 3 * pad
    cell = EXAMPLE_TILE + pad
    width = label_width + EXAMPLES_PER_CLASS * cell + pad
    out = np.full((max(len(rows), 1) * cell + pad, width, 3), 255, np.uint8)
    for r, (name, tiles) in enumerate(rows):
        y = pad + r * cell
        cv2.putText(out, name, (pad, y + EXAMPLE_TILE // 2 + 5), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        for k, tile in enumerate(tiles[:EXAMPLES_PER_CLASS]):
            x = label_width + k * cell
            out[y : y + EXAMPLE_TILE, x : x + EXAMPLE_TILE] = tile
    return out
