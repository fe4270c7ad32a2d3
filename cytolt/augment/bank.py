"""A bank of cell instances cut once from a COCO dataset, cached on disk, sampled by class for copy-paste.

Glossary:

- label: contiguous class index = position of the category in ``classes`` (default: the order of the
  file's ``categories`` list), the convention of mmdet's ``CocoDataset``.
- instance: a ``CellInstance`` (crop with ``margin`` context pixels, alpha matte, label, background colour).
- ``cells_per_class``: (C,) cells the bank holds per class; ``dataset_instances_per_class``: (C,) instances of
  each class in the dataset (the two differ when ``max_per_class`` caps the bank); ``dataset_images_per_class``:
  (C,) images of the dataset holding the class (``cytolt.category_stats`` counts all three).

The cache is one compressed ``.npz`` per (annotation file content, image file names and sizes, build options),
written atomically and read with ``allow_pickle=False``; a changed annotation file or image gives a new key. Its
arrays keep their version-1 names (``dataset_counts``, ``image_counts``) so existing caches stay valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cytolt.augment.cells import CellInstance, background_colour, soft_ellipse
from cytolt.category_stats import images_per_class, instances_per_class

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$CYTOLT_CACHE/cellbank``, by default ``~/.cache/cytolt/cellbank``."""
    root = os.environ.get("CYTOLT_CACHE", str(Path.home() / ".cache" / "cytolt"))
    return Path(root) / "cellbank"


def decode_segmentation(seg: object, height: int, width: int) -> np.ndarray | None:
    """COCO segmentation (polygons, uncompressed or compressed RLE) -> (H, W) bool, or None if absent."""
    from pycocotools import mask as mask_utils

    if not seg:
        return None
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]  # a polygon needs three points
        if not polys:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = seg
    else:
        raise ValueError(f"unknown COCO segmentation format: {type(seg).__name__}")
    return mask_utils.decode(rle).astype(bool)


class CellBank:
    """Cells of a dataset, grouped by class. Build with ``CellBank.build`` or ``CellBank.from_instances``.

    ``sample(class_id, rng)`` draws one instance of a class uniformly; ``cells_per_class`` etc. are described in
    the module docstring. ``from_cache`` says whether ``build`` read the bank from its cache file.
    """

    def __init__(
        self,
        *,
        images: Sequence[np.ndarray],
        alphas: Sequence[np.ndarray],
        labels: np.ndarray,
        backgrounds: np.ndarray,
        image_ids: np.ndarray,
        classes: Sequence[str],
        num_images: int,
        dataset_instances_per_class: np.ndarray | None = None,
        dataset_images_per_class: np.ndarray | None = None,
        cache_file: Path | None = None,
        from_cache: bool = False,
    ) -> None:
        n = len(images)
        if not (len(alphas) == len(labels) == len(backgrounds) == len(image_ids) == n):
            raise ValueError("images, alphas, labels, backgrounds and image_ids must have the same length")
        self.classes = tuple(classes)
        c = len(self.classes)
        self.labels = np.asarray(labels, np.int64).reshape(n)
        if n and (self.labels.min() < 0 or self.labels.max() >= c):
            raise ValueError(f"labels must lie in [0, {c}) for {c} classes")
        self._images = list(images)
        # Alpha kept as uint8 (1/255 steps), the same in memory and in the cache, so a cache hit is identical.
        self._alphas = [
            a if a.dtype == np.uint8 else np.round(np.clip(a, 0, 1) * 255).astype(np.uint8) for a in alphas
        ]
        self.backgrounds = np.asarray(backgrounds, np.float32).reshape(n, 3)
        self.image_ids = np.asarray(image_ids, np.int64).reshape(n)
        self.num_images = int(num_images)
        self.cells_per_class = instances_per_class(self.labels, c)
        # Without the dataset's own statistics, the bank's cells stand for the dataset.
        if dataset_instances_per_class is None:
            dataset_instances_per_class = self.cells_per_class.copy()
        self.dataset_instances_per_class = np.asarray(dataset_instances_per_class, np.int64)
        if dataset_images_per_class is None:
            dataset_images_per_class = images_per_class(self.labels, self.image_ids, c)
        self.dataset_images_per_class = np.asarray(dataset_images_per_class, np.int64)
        self.cache_file = cache_file
        self.from_cache = from_cache
        self._by_class = [np.flatnonzero(self.labels == k) for k in range(c)]

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        per_class = ", ".join(
            f"{name}={k}" for name, k in zip(self.classes, self.cells_per_class, strict=True)
        )
        return f"CellBank({len(self)} cells: {per_class})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def instance(self, index: int) -> CellInstance:
        """The ``index``-th stored cell as a ``CellInstance`` (alpha as float32 in [0, 1])."""
        bg = self.backgrounds[index]
        return CellInstance(
            self._images[index],
            self._alphas[index].astype(np.float32) / 255.0,
            int(self.labels[index]),
            None if np.isnan(bg).any() else bg,  # NaN: background unknown, no stain matching
        )

    def sample(self, class_id: int, rng: np.random.Generator) -> CellInstance:
        """One cell of class ``class_id``, drawn uniformly among the bank's cells of that class."""
        if not 0 <= class_id < self.num_classes:
            raise ValueError(f"class_id must be in [0, {self.num_classes}); got {class_id}")
        pool = self._by_class[class_id]
        if len(pool) == 0:
            raise ValueError(f"the bank holds no cell of class {class_id} ({self.classes[class_id]!r})")
        return self.instance(int(pool[rng.integers(len(pool))]))

    # ----------------------------------------------------------------------------------------- construction

    @classmethod
    def from_instances(
        cls,
        instances: Sequence[CellInstance],
        *,
        classes: Sequence[str],
        image_ids: Sequence[int] | None = None,
        num_images: int | None = None,
    ) -> CellBank:
        """A bank held in memory from ready-made cells (each from its own image unless ``image_ids`` says)."""
        n = len(instances)
        ids = np.arange(n) if image_ids is None else np.asarray(image_ids)
        # NaN marks an unknown background: such cells are pasted without stain matching.
        bgs = np.array(
            [i.background if i.background is not None else np.full(3, np.nan) for i in instances], np.float32
        ).reshape(n, 3)
        return cls(
            images=[i.image for i in instances],
            alphas=[i.alpha for i in instances],
            labels=np.array([i.label for i in instances], np.int64),
            backgrounds=bgs,
            image_ids=ids,
            classes=classes,
            num_images=num_images if num_images is not None else len(np.unique(ids)),
        )

    @classmethod
    def build(
        cls,
        ann_file: str | Path,
        img_dir: str | Path,
        *,
        classes: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        margin: int = 4,
        max_per_class: int | None = None,
        seed: int = 0,
    ) -> CellBank:
        """Cut every non-crowd annotation of a COCO dataset into the bank, or load it from the cache.

        ann_file: COCO json (boxes ``[x, y, w, h]``; segmentation polygons or RLE; without segmentation a cell
        gets the soft ellipse of its box). img_dir: folder that ``file_name`` is relative to.
        classes: category names to keep, in label order (default: all, in the file's order).
        cache_dir: where ``cellbank-<key>.npz`` lives (default ``default_cache_dir()``).
        margin: context pixels around each box. max_per_class: keep at most this many cells per class, chosen
        with ``seed`` (the statistics still count the whole dataset).
        """
        ann_file, img_dir = Path(ann_file), Path(img_dir)
        if not ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
        raw = ann_file.read_bytes()
        try:
            coco = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{ann_file}: not valid JSON ({e})") from e
        for key in ("images", "annotations", "categories"):
            if key not in coco:
                raise ValueError(f"{ann_file}: not a COCO file, missing the {key!r} list")
        cats = coco["categories"]
        names = [c["name"] for c in cats]
        if classes is None:
            classes = names
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise ValueError(f"{ann_file}: classes {unknown} not among the file's categories {names}")
        cat2label = {c["id"]: classes.index(c["name"]) for c in cats if c["name"] in classes}

        key = cls._cache_key(
            raw, coco, img_dir, classes=list(classes), margin=margin, max_per_class=max_per_class, seed=seed
        )
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = cache_dir / f"cellbank-{key}.npz"
        if cache_file.is_file():
            return cls._load(cache_file)

        images = {im["id"]: im for im in coco["images"]}
        anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
        kept = [a for a in anns if a["category_id"] in cat2label]
        c = len(classes)
        kept_labels = [cat2label[a["category_id"]] for a in kept]
        dataset_instances = instances_per_class(kept_labels, c)
        dataset_images = images_per_class(kept_labels, [a["image_id"] for a in kept], c)
        if max_per_class is not None:
            rng = np.random.default_rng(seed)
            chosen = []
            for lab in range(c):
                pool = [a for a in kept if cat2label[a["category_id"]] == lab]
                if len(pool) > max_per_class:
                    pick = np.sort(rng.choice(len(pool), size=max_per_class, replace=False))
                    pool = [pool[i] for i in pick]
                chosen.extend(pool)
            kept = chosen
        wanted = {id(a) for a in kept}
        by_image: dict[int, list[dict]] = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)

        crops, alphas, labels, bgs, ids = [], [], [], [], []
        for image_id in sorted({a["image_id"] for a in kept}):
            info = images.get(image_id)
            if info is None:
                raise ValueError(
                    f"{ann_file}: annotation refers to image id {image_id}, absent from 'images'"
                )
            path = img_dir / info["file_name"]
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"{ann_file}: image {path} is missing or unreadable")
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            h, w = img.shape[:2]
            fg = np.zeros((h, w), bool)
            items = []
            for a in by_image[image_id]:  # every annotation (crowd, other classes too) is foreground
                x, y, bw, bh = (float(v) for v in a["bbox"])
                box = (x, y, x + bw, y + bh)
                mask = decode_segmentation(a.get("segmentation"), h, w)
                if mask is None:
                    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
                    x1, y1 = min(int(np.ceil(x + bw)), w), min(int(np.ceil(y + bh)), h)
                    if x1 > x0 and y1 > y0:
                        fg[y0:y1, x0:x1] |= (
                            soft_ellipse(y1 - y0, x1 - x0, (x - x0, y - y0, x + bw - x0, y + bh - y0)) >= 0.5
                        )
                else:
                    fg |= mask
                if id(a) in wanted:
                    items.append((a, box, mask))
            bg = background_colour(img, fg)
            for a, (x, y, x2, y2), mask in items:
                x0, y0 = max(int(np.floor(x)) - margin, 0), max(int(np.floor(y)) - margin, 0)
                x1, y1 = min(int(np.ceil(x2)) + margin, w), min(int(np.ceil(y2)) + margin, h)
                if x1 <= x0 or y1 <= y0:
                    continue
                if mask is None:
                    alpha = soft_ellipse(y1 - y0, x1 - x0, (x - x0, y - y0, x2 - x0, y2 - y0))
                else:
                    alpha = mask[y0:y1, x0:x1].astype(np.float32)
                if not (alpha >= 0.5).any():
                    continue
                crops.append(img[y0:y1, x0:x1].copy())
                alphas.append(alpha)
                labels.append(cat2label[a["category_id"]])
                bgs.append(bg)
                ids.append(image_id)
        bank = cls(
            images=crops,
            alphas=alphas,
            labels=np.array(labels, np.int64),
            backgrounds=np.array(bgs, np.float32).reshape(-1, 3),
            image_ids=np.array(ids, np.int64),
            classes=classes,
            num_images=len(images),
            dataset_instances_per_class=dataset_instances,
            dataset_images_per_class=dataset_images,
            cache_file=cache_file,
        )
        bank._save(cache_file, source=str(ann_file))
        return bank

    # ----------------------------------------------------------------------------------------- cache

    @staticmethod
    def _cache_key(raw: bytes, coco: dict, img_dir: Path, **options: object) -> str:
        h = hashlib.sha256()
        h.update(f"cellbank-v{CACHE_VERSION}".encode())
        h.update(raw)
        h.update(json.dumps(options, sort_keys=True).encode())
        for im in sorted(coco["images"], key=lambda im: im["id"]):
            path = img_dir / im["file_name"]
            size = path.stat().st_size if path.is_file() else -1
            h.update(f"{im['file_name']}:{size};".encode())
        return h.hexdigest()[:20]

    def _save(self, path: Path, *, source: str) -> None:
        n = len(self)
        shapes = np.array([a.shape for a in self._alphas], np.int32).reshape(n, 2)
        arrays = dict(
            crops=np.concatenate([im.reshape(-1) for im in self._images]) if n else np.zeros(0, np.uint8),
            alphas=np.concatenate([a.reshape(-1) for a in self._alphas]) if n else np.zeros(0, np.uint8),
            shapes=shapes,
            labels=self.labels,
            backgrounds=self.backgrounds,
            image_ids=self.image_ids,
            classes=np.array(self.classes, dtype=np.str_),
            dataset_counts=self.dataset_instances_per_class,
            image_counts=self.dataset_images_per_class,
            num_images=np.int64(self.num_images),
            meta=np.str_(json.dumps({"version": CACHE_VERSION, "source": source})),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash or a parallel worker never leaves a half-written cache file behind.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def _load(cls, path: Path) -> CellBank:
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"cell bank cache {path} is unreadable ({e}); delete it to rebuild") from e
        shapes = d["shapes"].astype(np.int64)
        areas = shapes[:, 0] * shapes[:, 1]
        ends = np.cumsum(areas)
        starts = ends - areas
        crops = [
            d["crops"][3 * s : 3 * e].reshape(hh, ww, 3)
            for s, e, (hh, ww) in zip(starts, ends, shapes, strict=True)
        ]
        alphas = [
            d["alphas"][s:e].reshape(hh, ww) for s, e, (hh, ww) in zip(starts, ends, shapes, strict=True)
        ]
        return cls(
            images=crops,
            alphas=alphas,
            labels=d["labels"],
            backgrounds=d["backgrounds"],
            image_ids=d["image_ids"],
            classes=[str(c) for c in d["classes"]],
            num_images=int(d["num_images"]),
            dataset_instances_per_class=d["dataset_counts"],
            dataset_images_per_class=d["image_counts"],
            cache_file=path,
            from_cache=True,
        )
