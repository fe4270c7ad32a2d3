"""Cell crops for the second-stage classifier: a :class:`CropSet` and the functions that cut one.

Glossary
    box        (x0, y0, x1, y1) float, x1/y1 exclusive: level-0 px of a slide or px of a COCO image.
    S          the crop side in px (``size``); a crop is (S, S, 3) uint8 RGB centred on its cell's box centre.
    mpp        microns per pixel of the crops (the set's ``mpp``); ``pixel_mpp`` those of the source pixels.
    context    how much larger than the cell the crop must be: the crop covers at least a square of side
               ``context * max(w, h)`` around the box.
    crop mpp   what one crop pixel covers: ``max(mpp, context * max(w, h) * pixel_mpp / S)``.

Crop geometry (:func:`crop_squares`): the crop is a square of ``S * crop_mpp`` microns around the box centre,
resampled to S x S. Most cells fit in the field of ``S * mpp`` microns with their context, and their crops are
exactly at ``mpp``: the absolute size of a cell and its nucleus is diagnostic in cervical cytology (an ASC-US
nucleus is 2.5-3x the area of a normal intermediate one), so it is kept wherever it can be. A cell too large for
the field with its context margin is zoomed out until it fits (``crop_mpp > mpp``, recorded per crop in
``sources[i]["mpp"]``), so that no crop cuts its cell. ``context=0`` gives fixed-scale crops only (large cells
are cut); a tiny ``mpp`` gives crops scaled to their box only.

Layout written by :meth:`CropSet.write` (format ``CROPS_FORMAT``)::

    FOLDER/crops.npy    (N, S, S, 3) uint8 RGB, read back memory-mapped
    FOLDER/crops.json   format, classes, mpp, size, context, labels (N ints), sources (N records), info
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from cytolt.io import Slide

__all__ = [
    "CONTEXT",
    "CROPS_FORMAT",
    "LABEL_SOURCES",
    "CropSet",
    "crop_squares",
    "crops_from_boxes",
    "crops_from_coco",
    "crops_from_image",
    "crops_from_run",
    "crops_from_slides",
]

# 1: crops.npy + crops.json with classes, mpp, size, context, labels, sources, info.
CROPS_FORMAT = 1
# Crop side / cell side when the cell must be zoomed out: a quarter of the cell's size as margin on each side,
# enough to show the cell's border against its neighbours and the background.
CONTEXT = 1.5
# crops_from_run(labels=...): the reviewer's class, or the model's own call.
LABEL_SOURCES = ("reviewed", "model")

PathLike = str | os.PathLike[str]


class CropSet(Dataset):
    """Cell crops (N, S, S, 3) uint8 RGB centred on cells, at ``mpp`` um/px, with labels in the class table.

    Attributes:
        images: (N, S, S, 3) uint8 (memory-mapped when read from disk).
        labels: (N,) int64 in 0..K-1.
        class_names: K names, the detector's class table order.
        mpp: microns per pixel of the crops (a zoomed-out crop's own is in ``sources[i]["mpp"]``).
        sources: per crop a record: ``source`` (slide or image file name), ``box`` ([x0, y0, x1, y1] level-0 or
            image px), ``id`` (annotation id, cell index or detection key) and more where known (``mpp``).
        context: the context factor the crops were cut with (module docstring), None when unknown.
        info: free-form provenance (generator, seed, ...), written with the set.

    ``dataset[i]`` is ``(float32 (3, S, S) in [0, 1], label)``, what :class:`~cytolt.classify.model.CellClassifier`
    takes.
    """

    IMAGES = "crops.npy"
    META = "crops.json"

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        mpp: float,
        *,
        sources: Sequence[Mapping[str, Any]] | None = None,
        context: float | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if (
            images.ndim != 4
            or images.shape[3] != 3
            or images.shape[1] != images.shape[2]
            or images.dtype != np.uint8
        ):
            raise ValueError(f"images must be (N, S, S, 3) uint8; got {images.shape} {images.dtype}")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} crops")
        names = tuple(str(c) for c in class_names)
        if not names:
            raise ValueError("class_names must name at least one class")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"labels must be in 0..{len(names) - 1}; got {labels.min()}..{labels.max()}")
        if not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(f"mpp must be positive; got {mpp}")
        records = [dict(s) for s in sources] if sources is not None else [{} for _ in range(len(images))]
        if len(records) != len(images):
            raise ValueError(f"{len(records)} source records for {len(images)} crops")
        self.images = images
        self.labels = labels
        self.class_names = names
        self.mpp = float(mpp)
        self.sources = records
        self.context = None if context is None else float(context)
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.images[i], copy=True))
        return image.permute(2, 0, 1).float().div_(255.0), int(self.labels[i])

    def __repr__(self) -> str:
        return f"CropSet({len(self)} crops of {self.size} px at {self.mpp:g} um/px, {len(self.class_names)} classes)"

    @property
    def size(self) -> int:
        """S, the crop side in px."""
        return int(self.images.shape[1])

    def counts(self) -> np.ndarray:
        """(K,) int64 crops per class."""
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def format(self) -> str:
        """A summary line and the class table: class, crops, shot group of this set as a training set
        (:func:`cytolt.classify.metrics.shot_groups`)."""
        from cytolt.classify.metrics import FEW, MANY, shot_groups

        counts = self.counts()
        width = max(8, *(len(c) for c in self.class_names))
        lines = [
            f"{len(self)} crops of {self.size} px at {self.mpp:g} um/px, {len(self.class_names)} classes "
            f"(groups as a training set: many > {MANY}, few < {FEW})",
            f"{'class':<{width}}  {'crops':>6}  group",
        ]
        for name, n, group in zip(self.class_names, counts, shot_groups(counts), strict=True):
            lines.append(f"{name:<{width}}  {int(n):>6}  {group}")
        return "\n".join(lines)

    def subset(self, indices: Sequence[int] | np.ndarray) -> CropSet:
        """The crops at ``indices`` (ints, or a boolean mask of length N), in that order, as a new set in memory."""
        index = np.asarray(indices)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"a boolean mask must have {len(self)} entries; got {index.shape}")
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        return CropSet(
            np.asarray(self.images[index]),
            self.labels[index],
            self.class_names,
            self.mpp,
            sources=[self.sources[i] for i in index],
            context=self.context,
            info=self.info,
        )

    # ----------------------------------------------------------------- files
    def write(self, folder: PathLike) -> Path:
        """Write ``folder/crops.npy`` and ``folder/crops.json`` (each replaced atomically); returns the folder."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": CROPS_FORMAT,
            "classes": list(self.class_names),
            "mpp": self.mpp,
            "size": self.size,
            "context": self.context,
            "count": len(self),
            "labels": self.labels.tolist(),
            "sources": self.sources,
            "info": self.info,
        }
        tmp_images = out / (self.IMAGES + ".tmp")
        with open(tmp_images, "wb") as fh:
            np.save(fh, np.ascontiguousarray(self.images), allow_pickle=False)
        tmp_meta = out / (self.META + ".tmp")
        tmp_meta.write_text(json.dumps(meta, separators=(",", ":")) + "\n")
        tmp_images.replace(out / self.IMAGES)
        tmp_meta.replace(out / self.META)
        return out

    @classmethod
    def read(cls, folder: PathLike) -> CropSet:
        """Read a folder written by :meth:`write`; the images stay on disk (memory-mapped).

        Raises:
            FileNotFoundError: the folder, crops.json or crops.npy is missing (named).
            ValueError: a file is not what crops.json describes, or the format is newer than this cytolt's.
        """
        folder = Path(folder)
        meta_path, images_path = folder / cls.META, folder / cls.IMAGES
        for path in (meta_path, images_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{folder} is not a crop set: {path.name} is missing (see `cytolt classify crops`)"
                )
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            fmt = int(meta["format"])
            classes = [str(c) for c in meta["classes"]]
            mpp, size = float(meta["mpp"]), int(meta["size"])
            labels = np.asarray(meta["labels"], dtype=np.int64).reshape(-1)
            sources = meta.get("sources")
            context = meta.get("context")
            context = None if context is None else float(context)
            if sources is not None and not all(isinstance(s, dict) for s in sources):
                raise TypeError("sources must be a list of objects")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: not a valid crop set description ({exc})") from exc
        if fmt > CROPS_FORMAT:
            raise ValueError(
                f"{meta_path}: crop set format {fmt} is newer than this cytolt reads ({CROPS_FORMAT}); upgrade cytolt"
            )
        try:
            images = np.load(images_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{images_path}: not a readable .npy array ({exc})") from exc
        expected = (len(labels), size, size, 3)
        if images.shape != expected or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path}: holds {images.shape} {images.dtype}; {meta_path.name} describes "
                f"{len(labels)} crops of {size} x {size} px, uint8 RGB {expected}"
            )
        try:
            return cls(
                images, labels, classes, mpp, sources=sources, context=context, info=meta.get("info") or {}
            )
        except ValueError as exc:
            raise ValueError(f"{meta_path}: {exc}") from exc


# --------------------------------------------------------------------- geometry


def crop_squares(
    boxes: np.ndarray,
    *,
    size: int,
    mpp: float,
    context: float = CONTEXT,
    pixel_mpp: float | tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each crop lies (module docstring): ``(centres (M, 2), sides (M, 2), crop_mpp (M,))``.

    ``boxes`` (M, 4) xyxy in source px of ``pixel_mpp`` microns (a number or (x, y)); centres and sides (x, y)
    are in source px, ``crop_mpp`` in microns per crop pixel (>= ``mpp``).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1 px; got {size}")
    if not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be positive; got {mpp}")
    if not (math.isfinite(context) and context >= 0):
        raise ValueError(f"context must be >= 0; got {context}")
    mx, my = (pixel_mpp, pixel_mpp) if isinstance(pixel_mpp, int | float) else pixel_mpp
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    extent_um = np.maximum((boxes[:, 2] - boxes[:, 0]) * mx, (boxes[:, 3] - boxes[:, 1]) * my)
    side_um = np.maximum(size * mpp, context * extent_um)
    sides = np.stack([side_um / mx, side_um / my], axis=1)
    return centres, sides, side_um / size


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) -> (size, size, 3): INTER_AREA to shrink (no aliasing), bilinear to enlarge, as cytolt.io does."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] >= size and image.shape[1] >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def border_colour(image: np.ndarray) -> np.ndarray:
    """(3,) uint8 median colour of the outermost pixel ring of an (H, W, 3) image: what a crop is padded with."""
    ring = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(ring, axis=0).round().astype(np.uint8)


def crops_from_image(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    size: int,
    mpp: float,
    pixel_mpp: float,
    context: float = CONTEXT,
    fill: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Crops of the boxes of one in-memory (H, W, 3) uint8 image: ``((M, S, S, 3) uint8, crop_mpp (M,))``.

    Each crop square is cut on whole pixels (top-left rounded), padded outside the image with ``fill``
    (default :func:`border_colour`), and resampled to S x S; where the square is S px (crop at ``mpp`` equal to
    ``pixel_mpp``) the crop is a plain copy of the image's pixels.
    """
    centres, sides, crop_mpp = crop_squares(boxes, size=size, mpp=mpp, context=context, pixel_mpp=pixel_mpp)
    fill = border_colour(image) if fill is None else np.asarray(fill, np.uint8)
    height, width = image.shape[:2]
    out = np.empty((len(centres), size, size, 3), np.uint8)
    for k, ((cx, cy), (sx, sy)) in enumerate(zip(centres, sides, strict=True)):
        w, h = max(1, round(sx)), max(1, round(sy))
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        window = np.empty((h, w, 3), np.uint8)
        window[:] = fill
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if ix1 > ix0 and iy1 > iy0:
            window[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
        out[k] = _resize(window, size)
    return out, crop_mpp


def crops_from_boxes(
    slide: Slide, boxes_level0: np.ndarray, *, size: int, mpp: float, context: float = CONTEXT
) -> np.ndarray:
    """(M, S, S, 3) uint8 crops of an open cytolt :class:`~cytolt.io.Slide` around level-0 boxes (M, 4) xyxy.

    Each crop is read with ``slide.read_at_mpp`` at its crop mpp (module docstring) from the nearest finer
    pyramid level; parts outside the slide are white, as the slide readers return them.

    Raises:
        SlideError: the slide records no mpp (open it with ``mpp=``), or a box lies entirely outside it.
    """
    return _read_crops(slide, boxes_level0, size=size, mpp=mpp, context=context)[0]


def _read_crops(
    slide: Slide, boxes_level0: np.ndarray, *, size: int, mpp: float, context: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crops_from_boxes` and the crops' mpp (M,)."""
    from cytolt.io import SlideError

    boxes = np.asarray(boxes_level0, dtype=np.float64).reshape(-1, 4)
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    if not len(boxes):
        return out, np.zeros(0)
    if slide.mpp is None:
        raise SlideError(slide.path, "the slide records no microns per pixel; open it with mpp= (or --mpp)")
    centres, sides, crop_mpp = crop_squares(boxes, size=size, mpp=mpp, context=context, pixel_mpp=slide.mpp)
    for k in range(len(boxes)):
        # the top-left on whole level-0 px, rounded half up like crops_from_image's
        x0 = math.floor(centres[k, 0] - sides[k, 0] / 2 + 0.5)
        y0 = math.floor(centres[k, 1] - sides[k, 1] / 2 + 0.5)
        out[k] = slide.read_at_mpp((x0, y0), float(crop_mpp[k]), (size, size))
    return out, crop_mpp


# --------------------------------------------------------------------- sources


def crops_from_coco(
    ann_file: PathLike,
    image_dir: PathLike,
    *,
    size: int,
    mpp: float,
    image_mpp: float | None = None,
    context: float = CONTEXT,
) -> CropSet:
    """Crops of the ground-truth boxes of a COCO file (e.g. :func:`cytolt.synth.make_patch_dataset`'s).

    Classes are the file's categories in id order (label = position). The images' microns per pixel: ``image_mpp``
    when given, else each image record's ``mpp`` (``cytolt dataset build`` writes one), else the file's
    ``info.mpp`` (``make_patch_dataset`` writes it). Crowd annotations and empty boxes are left out; crops
    outside an image are padded with its border colour (:func:`crops_from_image`).

    Raises:
        FileNotFoundError: the file or an image is missing; ValueError: the file is no COCO instance file or
        no microns per pixel are known for an image.
    """
    ann_path = Path(ann_file)
    try:
        doc = json.loads(ann_path.read_text())
        categories = sorted(doc["categories"], key=lambda c: int(c["id"]))
        images = {int(im["id"]): im for im in doc["images"]}
        annotations = doc["annotations"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{ann_path}: annotation file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{ann_path}: not a COCO instance file ({exc})") from exc
    label_of = {int(c["id"]): k for k, c in enumerate(categories)}
    info_mpp = (doc.get("info") or {}).get("mpp")
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in annotations:
        x, y, w, h = (float(v) for v in ann["bbox"])
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
            continue
        if int(ann["category_id"]) not in label_of or int(ann["image_id"]) not in images:
            raise ValueError(f"{ann_path}: annotation {ann.get('id')} names an unknown category or image")
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    crops, labels, sources, crop_mpps = [], [], [], []
    for image_id in sorted(by_image):
        record = images[image_id]
        pixel_mpp = image_mpp or record.get("mpp") or info_mpp
        if not pixel_mpp:
            raise ValueError(
                f"{ann_path}: no microns per pixel for image {record.get('file_name')} "
                "(neither the image record nor info has 'mpp'); pass image_mpp (--image-mpp)"
            )
        image = _read_rgb(Path(image_dir) / record["file_name"])
        anns = by_image[image_id]
        boxes = np.array(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in anns
            ]
        )
        cut, crop_mpp = crops_from_image(
            image, boxes, size=size, mpp=mpp, pixel_mpp=float(pixel_mpp), context=context
        )
        crops.append(cut)
        labels += [label_of[int(a["category_id"])] for a in anns]
        crop_mpps.append(crop_mpp)
        sources += [
            {"source": record["file_name"], "box": _box_list(b), "id": a.get("id")}
            for a, b in zip(anns, boxes, strict=True)
        ]
    if not crops:
        raise ValueError(f"{ann_path}: no annotation to crop")
    return _crop_set(
        crops,
        labels,
        [c["name"] for c in categories],
        mpp,
        sources,
        crop_mpps,
        context,
        {"from": "coco", "annotations": str(ann_path)},
    )


def crops_from_slides(
    slides: Sequence[PathLike],
    *,
    size: int,
    mpp: float,
    context: float = CONTEXT,
    class_names: Sequence[str] | None = None,
) -> CropSet:
    """Crops of the ground-truth cells of synthetic slides (``<slide>.cells.json`` beside each, see
    :func:`cytolt.synth.cells_path_for`), read through :func:`cytolt.io.open_slide`.

    ``class_names`` is the class table (default: the first ground-truth file's ``classes``); cells of other
    classes are left out. A slide recording no mpp is read at the ground truth's ``mpp``.

    Raises:
        FileNotFoundError: a slide's ground-truth file is missing; ValueError: it is not valid, or (without
        ``class_names``) two files disagree on the classes; SlideError: a slide cannot be read.
    """
    from cytolt.io import open_slide
    from cytolt.synth import cells_path_for

    names = None if class_names is None else tuple(class_names)
    crops, labels, sources, crop_mpps = [], [], [], []
    for slide_path in slides:
        truth_path = cells_path_for(slide_path)
        if not truth_path.is_file():
            raise FileNotFoundError(f"{truth_path}: ground truth of {slide_path} not found")
        try:
            truth = json.loads(truth_path.read_text())
            truth_classes = tuple(str(c) for c in truth["classes"])
            cells = [(c["box"], str(c["class"])) for c in truth["cells"]]
            truth_mpp = float(truth["mpp"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{truth_path}: not a cytolt ground-truth file ({exc})") from exc
        if names is None:
            names = truth_classes
        elif class_names is None and truth_classes != names:
            raise ValueError(
                f"{truth_path}: classes {list(truth_classes)} differ from the first slide's {list(names)}"
            )
        keep = [(i, box, names.index(label)) for i, (box, label) in enumerate(cells) if label in names]
        boxes = np.array([box for _, box, _ in keep], dtype=np.float64).reshape(-1, 4)
        slide = open_slide(slide_path)
        if slide.mpp is None:
            slide.close()
            slide = open_slide(slide_path, mpp=truth_mpp)
        with slide:
            cut, crop_mpp = _read_crops(slide, boxes, size=size, mpp=mpp, context=context)
        crops.append(cut)
        crop_mpps.append(crop_mpp)
        labels += [label for _, _, label in keep]
        name = Path(slide_path).name
        sources += [{"source": name, "box": _box_list(box), "id": i} for i, box, _ in keep]
    if names is None:
        raise ValueError("slides must name at least one slide")
    if not labels:
        raise ValueError(f"no cell of the classes {list(names)} on the slides")
    return _crop_set(crops, labels, names, mpp, sources, crop_mpps, context, {"from": "slides"})


def crops_from_run(
    run_dir: PathLike,
    *,
    size: int,
    mpp: float,
    min_score: float = 0.5,
    labels: str = "reviewed",
    context: float = CONTEXT,
) -> CropSet:
    """Crops of the detections of a screening run folder, in the class table of its store.

    ``labels="reviewed"``: the latest review of each detection decides (:func:`cytolt.datasets.from_review.review_boxes`):
    accepted -> the model's class, reclassified -> the new class; rejected and unreviewed detections are left out
    (so is ``min_score``: a reviewer looked at every cell kept). ``labels="model"``: every detection scoring at
    least ``min_score``, labelled with the model's class. Slides are found where the run recorded them or beside
    the run folder (:meth:`cytolt.store.RunFolder.locate_slide`).

    Raises:
        ValueError: not a run folder, an unknown ``labels``, or no detection to crop; FileNotFoundError: a
        slide file is gone.
    """
    from cytolt.datasets.from_review import review_boxes
    from cytolt.io import open_slide
    from cytolt.store import DetectionStore, RunFolder

    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {', '.join(map(repr, LABEL_SOURCES))}; got {labels!r}")
    found = RunFolder.locate(run_dir)
    if found is None:
        raise ValueError(f"{run_dir}: not a cytolt run folder (no {RunFolder.STORE} in it)")
    run = found[0]
    per_slide: list[tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]] = []
    with DetectionStore(run.store_path, readonly=True) as store:
        classes = tuple(store.class_names)
        for record in store.slides():
            if labels == "reviewed":
                if not store.reviews(record.id, latest=True):
                    continue
                # keep_unreviewed=inf: no unreviewed detection is kept, whatever its score
                rb = review_boxes(store, record.id, keep_unreviewed=math.inf)
                keep = rb.reviewed & (rb.labels >= 0)
                boxes, cls = rb.boxes[keep], rb.labels[keep]
                extra = [{"model_label": int(m)} for m in rb.model_labels[keep]]
            else:
                cols = store.columns(record.id, min_score=min_score)
                boxes, cls = (
                    np.asarray(cols["boxes"], np.float64).reshape(-1, 4),
                    np.asarray(cols["labels"], np.int64),
                )
                extra = [
                    {"id": key, "score": round(float(s), 6)}
                    for key, s in zip(cols["key"], cols["scores"], strict=True)
                ]
            if len(boxes):
                per_slide.append((record, boxes, cls, extra))
    if not per_slide:
        what = (
            "reviewed (accepted or reclassified) detections"
            if labels == "reviewed"
            else f"detections scoring >= {min_score}"
        )
        raise ValueError(f"{run.store_path}: no {what} in this run")
    crops, all_labels, sources, crop_mpps = [], [], [], []
    for record, boxes, cls, extra in per_slide:
        path = run.locate_slide(record.path)
        if path is None:
            raise FileNotFoundError(f"slide {record.path} of {run.path} not found (moved?)")
        with open_slide(path, mpp=record.mpp) as slide:
            cut, crop_mpp = _read_crops(slide, boxes, size=size, mpp=mpp, context=context)
        crops.append(cut)
        crop_mpps.append(crop_mpp)
        all_labels += cls.tolist()
        sources += [
            {"source": path.name, "box": _box_list(b), "id": f"{path.name}:{n}", **e}
            for n, (b, e) in enumerate(zip(boxes, extra, strict=True))
        ]
    return _crop_set(
        crops,
        all_labels,
        classes,
        mpp,
        sources,
        crop_mpps,
        context,
        {"from": "run", "run": str(run.path), "labels": labels},
    )


# --------------------------------------------------------------------- helpers


def _read_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _box_list(box: Iterable[float]) -> list[float]:
    return [round(float(v), 3) for v in box]


def _crop_set(
    crops: list[np.ndarray],
    labels: list[int],
    class_names: Sequence[str],
    mpp: float,
    sources: list[dict[str, Any]],
    crop_mpps: list[np.ndarray],
    context: float,
    info: dict[str, Any],
) -> CropSet:
    """Join per-image pieces; each source records its crop mpp where it is coarser than the set's (zoomed out)."""
    images = np.concatenate(crops)
    for record, m in zip(sources, np.concatenate(crop_mpps), strict=True):
        if m > mpp * (1 + 1e-9):
            record["mpp"] = round(float(m), 6)
    return CropSet(images, labels, class_names, mpp, sources=sources, context=context, info=info)
