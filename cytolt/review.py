"""Slide review without a GUI: lazy pyramid arrays, run folders, slide summaries and a ranked review queue.

The napari plugin (``plugins/napari-cytolt``) is a thin layer over this module; everything here works and is
tested without napari or Qt. Glossary:

- level array: an (H, W, 3) uint8 array-like over one pyramid level of a slide; indexing reads the pixels
  through :meth:`cytolt.io.Slide.read_region`, so a 100,000 x 100,000 slide costs nothing until viewed.
- run folder: what ``cytolt screen`` writes, ``RUN_DIR/run.sqlite`` (:class:`~cytolt.store.DetectionStore`) and
  ``RUN_DIR/<slide stem>/report.json`` per slide (docs/store.md, cytolt/report/schema/report.schema.json).
- boxes are ``(x0, y0, x1, y1)`` level-0 pixels with pixel ``i`` spanning ``[i, i + 1)``; napari puts pixel
  centres on integers, so a point at level-0 position ``x`` sits at napari data coordinate ``x - 0.5``.
- review queue: per class, the top ``k`` detections by score, best first; decisions go straight into the
  store (:meth:`DetectionStore.add_review`), never into memory only.

Importing this module imports neither napari nor Qt nor mmdet.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytolt.io import Slide, SlideError, open_slide
from cytolt.store import DetectionStore, Review

__all__ = [
    "REPORT_FILE",
    "RUN_STORE",
    "SLIDE_EXTENSIONS",
    "DetectionTable",
    "QueueItem",
    "ReviewQueue",
    "RunSlide",
    "SlideLevelArray",
    "SlideSummary",
    "cached_demo_run",
    "cell_thumbnail",
    "class_colors",
    "detection_table",
    "find_report",
    "locate_slide",
    "make_demo_run",
    "open_run",
    "open_slide_quiet",
    "run_dir_of",
    "shown_mask",
    "slide_pyramid",
    "slide_summary",
]

RUN_STORE = "run.sqlite"
REPORT_FILE = "report.json"
# Whole-slide formats cytolt.io opens (OpenSlide's list plus OME-TIFF); matched on the lower-case name.
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ome.tif",
    ".ome.tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".bif",
    ".svslide",
    ".dcm",
)


# -- lazy pyramid ----------------------------------------------------------------------------------------------


def _level0(pos: int, downsample: float) -> int:
    """Smallest level-0 coordinate whose level pixel, ``floor(x / downsample)``, is ``pos``."""
    x = math.ceil(pos * downsample)
    # pos * downsample is rounded in floating point; step back or forward one pixel when that moved it over.
    while x > 0 and math.floor((x - 1) / downsample) >= pos:
        x -= 1
    while math.floor(x / downsample) < pos:
        x += 1
    return x


class SlideLevelArray:
    """(H, W, 3) uint8 array-like over pyramid level ``level`` of an open slide, read on indexing.

    Supports what napari's multiscale slicing uses: ``shape``, ``dtype``, ``ndim``, ``size``, and basic
    indexing (ints, slices with any step, ``...``). Each ``__getitem__`` is one ``slide.read_region`` of the
    bounding rectangle of the selected rows and columns; ``np.asarray`` reads the whole level, which is refused
    above ``max_pixels`` (level 0 of a real slide does not fit in memory).
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, slide: Slide, level: int, *, max_pixels: int = 1 << 26) -> None:
        if not 0 <= level < slide.level_count:
            raise ValueError(f"{slide.path}: level must be in [0, {slide.level_count}); got {level}")
        self.slide = slide
        self.level = int(level)
        self.downsample = float(slide.level_downsamples[level])
        w, h = slide.level_dimensions[level]
        self.shape = (int(h), int(w), 3)
        self.max_pixels = int(max_pixels)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * 3

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SlideLevelArray({self.slide.path.name!r}, level={self.level}, shape={self.shape})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        h, w, _ = self.shape
        if h * w > self.max_pixels:
            raise ValueError(
                f"{self.slide.path}: level {self.level} is {w} x {h} px, more than max_pixels={self.max_pixels};"
                " index a region instead of converting the whole level"
            )
        out = self[:, :, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}-d slide level: {len(key)}")
        key = key + (slice(None),) * (self.ndim - len(key))
        r_idx, r_drop = self._axis(key[0], self.shape[0], "row")
        c_idx, c_drop = self._axis(key[1], self.shape[1], "column")
        if len(r_idx) == 0 or len(c_idx) == 0:
            out = np.zeros((len(r_idx), len(c_idx), 3), dtype=np.uint8)
        else:
            r0, r1 = int(r_idx.min()), int(r_idx.max()) + 1
            c0, c1 = int(c_idx.min()), int(c_idx.max()) + 1
            loc = (_level0(c0, self.downsample), _level0(r0, self.downsample))
            out = self.slide.read_region(loc, self.level, (c1 - c0, r1 - r0))
            if _strided(r_idx, c_idx):
                out = out[np.ix_(r_idx - r0, c_idx - c0)]
        # an integer index drops its axis, as in numpy
        return out[0 if r_drop else slice(None), 0 if c_drop else slice(None), key[2]]

    @staticmethod
    def _axis(k: Any, n: int, name: str) -> tuple[np.ndarray, bool]:
        """Indices selected on one axis and whether an integer index drops the axis."""
        if isinstance(k, slice):
            return np.arange(*k.indices(n)), False
        if isinstance(k, int | np.integer):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"{name} index {k} out of range for size {n}")
            return np.array([i]), True
        raise TypeError(
            f"slide levels support ints, slices and ...; got {type(k).__name__} for the {name} axis"
        )


def _strided(r_idx: np.ndarray, c_idx: np.ndarray) -> bool:
    """Whether the selection is not simply the contiguous rectangle read (a step other than 1)."""
    return not (np.all(np.diff(r_idx) == 1) and np.all(np.diff(c_idx) == 1))


def slide_pyramid(slide: Slide) -> list[SlideLevelArray]:
    """One :class:`SlideLevelArray` per level, finest first: napari's ``multiscale=True`` data."""
    return [SlideLevelArray(slide, k) for k in range(slide.level_count)]


# -- run folders -----------------------------------------------------------------------------------------------


def run_dir_of(path: str | os.PathLike[str]) -> tuple[Path, str | None] | None:
    """The run folder a path belongs to and, when the path names one slide's report folder, its folder name.

    Accepts ``RUN_DIR``, ``RUN_DIR/run.sqlite``, ``RUN_DIR/<slide stem>`` and ``RUN_DIR/<slide stem>/report.json``.
    Returns None for anything else (it only looks at names and file existence, never opens the store).
    """
    p = Path(path)
    if p.is_file() and p.name == RUN_STORE:
        return p.parent, None
    if p.is_file() and p.name == REPORT_FILE and (p.parent.parent / RUN_STORE).is_file():
        return p.parent.parent, p.parent.name
    if p.is_dir():
        if (p / RUN_STORE).is_file():
            return p, None
        if (p / REPORT_FILE).is_file() and (p.parent / RUN_STORE).is_file():
            return p.parent, p.name
    return None


def locate_slide(stored_path: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path | None:
    """Where a run's slide is now: its stored path, else a file of the same name in or beside the run folder."""
    stored = Path(stored_path)
    run_dir = Path(run_dir)
    for candidate in (stored, run_dir / stored.name, run_dir.parent / stored.name):
        if candidate.is_file():
            return candidate
    return None


def find_report(run_dir: str | os.PathLike[str], slide_name: str) -> Path | None:
    """``report.json`` of the slide called ``slide_name`` (file name) in a run folder, or None.

    ``cytolt screen`` writes it to ``RUN_DIR/<stem>/`` (``<stem>-2`` ... for repeated stems); the report's own
    ``slide.name`` decides, so a renamed folder is still found.
    """
    run_dir = Path(run_dir)
    stem = Path(slide_name).stem or slide_name
    guesses = [run_dir / stem / REPORT_FILE]
    others = sorted(p for p in run_dir.glob(f"*/{REPORT_FILE}") if p not in guesses)
    for path in guesses + others:
        if path.is_file() and _report_slide_name(path) == slide_name:
            return path
    return None


def _report_slide_name(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["slide"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class RunSlide:
    """One slide of a run folder: where its store, pixels and report are.

    ``slide_path`` is None when the file is neither at its stored path nor in or beside the run folder;
    ``report_path`` is None when the run wrote no report for it.
    """

    run_dir: Path
    store_path: Path
    slide_id: int
    name: str
    stored_path: str
    slide_path: Path | None
    report_path: Path | None
    mpp: tuple[float, float] | None
    status: str


def open_run(path: str | os.PathLike[str], *, slide: int | str | None = None) -> RunSlide:
    """Resolve a run folder (or its ``run.sqlite``, or one slide's report folder) to one of its slides.

    ``slide`` picks by store id or file name; by default the slide of the report folder given, else the first
    slide whose status is ``done`` (else the first slide). Raises ValueError naming the path when it is no run
    folder or holds no such slide.
    """
    found = run_dir_of(path)
    if found is None:
        raise ValueError(f"{path}: not a cytolt run folder (no {RUN_STORE} in it or its parent)")
    run_dir, folder = found
    store_path = run_dir / RUN_STORE
    with DetectionStore(store_path, readonly=True) as store:
        records = store.slides()
    if not records:
        raise ValueError(f"{store_path}: the run has no slides")
    chosen = None
    if isinstance(slide, int):
        chosen = next((r for r in records if r.id == slide), None)
    elif isinstance(slide, str):
        chosen = next((r for r in records if Path(r.path).name == slide), None)
    elif folder is not None:
        name = _report_slide_name(run_dir / folder / REPORT_FILE)
        chosen = next((r for r in records if Path(r.path).name == name), None)
    else:
        chosen = next((r for r in records if r.status == "done"), records[0])
    if chosen is None:
        names = [Path(r.path).name for r in records]
        raise ValueError(f"{store_path}: no slide {slide or folder!r} in this run; slides are {names}")
    name = Path(chosen.path).name
    return RunSlide(
        run_dir=run_dir,
        store_path=store_path,
        slide_id=chosen.id,
        name=name,
        stored_path=chosen.path,
        slide_path=locate_slide(chosen.path, run_dir),
        report_path=find_report(run_dir, name),
        mpp=chosen.mpp,
        status=chosen.status,
    )


# -- summary ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideSummary:
    """What a reviewer reads first: slide score in [0, 1], category call, the rule that fired, counts per class.

    ``source`` says where it came from: ``"report"`` (the run's report.json), ``"scorer"`` (the run's slide
    scorer re-applied to the stored detections) or ``"store"`` (counts only; score and call are None).
    """

    name: str
    score: float | None
    call: str | None
    reason: str | None
    counts: dict[str, int]
    total: int
    source: str


def slide_summary(run: RunSlide, store: DetectionStore) -> SlideSummary:
    """The summary of a run's slide: from its report.json, else computed from the store.

    Without a report, counts are the store's detections per class (no threshold) and, when the run recorded
    its slide scorer (``params["scorer"]`` of the run, as ``cytolt screen`` does), score and call are that
    scorer applied to the stored detections.
    """
    if run.report_path is not None:
        try:
            report = json.loads(run.report_path.read_text())
            score = report.get("score") or {}
            counts = {str(k): int(v) for k, v in report["detections"]["per_class"].items()}
            return SlideSummary(
                name=run.name,
                score=None if score.get("slide_score") is None else float(score["slide_score"]),
                call=score.get("category"),
                reason=score.get("reason"),
                counts=counts,
                total=int(report["detections"]["total"]),
                source="report",
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged report must not hide the slide: fall back to the store
    counts = store.counts(run.slide_id)
    scorer = _run_scorer(store, run.slide_id)
    if scorer is None:
        return SlideSummary(run.name, None, None, None, counts, sum(counts.values()), "store")
    dets, _ = store.query(run.slide_id)
    result = scorer.score(dets)
    return SlideSummary(
        run.name, result.slide_score, result.category, result.reason, counts, sum(counts.values()), "scorer"
    )


def _run_scorer(store: DetectionStore, slide_id: int) -> Any:
    from cytolt.aggregate import SlideScorer  # only needed without a report

    run_id = store.slide(slide_id).run_id
    params = next((r["params"] for r in store.runs() if r["id"] == run_id), {})
    data = params.get("scorer") if isinstance(params, Mapping) else None
    if not data:
        return None
    try:
        return SlideScorer.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


def class_colors(
    class_names: Sequence[str], *, report_path: str | os.PathLike[str] | None = None
) -> list[tuple[int, int, int]]:
    """(r, g, b) per class in label order: the run report's model colours when it lists these classes, else
    :data:`cytolt.synth.CLASS_COLORS` for the names it knows, else Tableau 10 by label (as the exports)."""
    from cytolt.store.geojson import DEFAULT_COLORS
    from cytolt.synth import CLASS_COLORS

    names = list(class_names)
    if report_path is not None:
        try:
            model = json.loads(Path(report_path).read_text())["model"]
            if list(model["classes"]) == names:
                return [tuple(int(v) for v in c[:3]) for c in model["colors"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return [tuple(CLASS_COLORS.get(n, DEFAULT_COLORS[i % len(DEFAULT_COLORS)])) for i, n in enumerate(names)]


# -- detections as columns --------------------------------------------------------------------------------------


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


# -- review queue ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One cell to review: store row id, model class, score, box (x0, y0, x1, y1 level-0 px), rank in its class."""

    detection_id: int
    label: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    rank: int


class ReviewQueue:
    """The cells a reviewer checks on one slide, class by class, best score first; decisions go to the store.

    ``classes`` (names) chooses the classes and their order; by default every class with detections on the
    slide, in reverse label order: cytolt's class lists run from head to tail (``cytolt.synth.CLASSES``), so the
    rare abnormal classes a cytotechnologist must see come first. Each class contributes its top ``per_class``
    detections. :meth:`decide` writes a review at once (``DetectionStore.add_review``), so
    nothing is lost when the viewer closes, and reopening the queue shows earlier decisions.
    """

    def __init__(
        self,
        store: DetectionStore,
        slide_id: int,
        *,
        per_class: int = 30,
        classes: Sequence[str] | None = None,
    ) -> None:
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1; got {per_class}")
        self.store = store
        self.slide_id = int(slide_id)
        self.per_class = int(per_class)
        self.index = 0
        names = store.class_names
        counts = store.counts(self.slide_id)
        if classes is None:
            classes = [n for n in reversed(names) if counts.get(n, 0) > 0]
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise ValueError(f"{store.path}: unknown classes {unknown}; classes are {names}")
        self.classes: list[str] = list(classes)
        self.items: list[QueueItem] = []
        for name in self.classes:
            dets, ids = store.top_k(self.slide_id, name, self.per_class)
            arr = dets.numpy()
            rows = zip(ids.tolist(), arr["boxes"].tolist(), arr["scores"].tolist(), strict=True)
            for rank, (i, box, score) in enumerate(rows):
                self.items.append(
                    QueueItem(
                        detection_id=int(i),
                        label=names.index(name),
                        class_name=name,
                        score=float(score),
                        box=tuple(box),
                        rank=rank,
                    )
                )
        self._decisions: dict[int, Review] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the latest decisions from the store (e.g. made by another reviewer meanwhile)."""
        self._decisions = {
            r.detection_id: r
            for r in self.store.reviews(self.slide_id, latest=True)
            if r.detection_id is not None
        }

    def __len__(self) -> int:
        return len(self.items)

    @property
    def current(self) -> QueueItem | None:
        return self.items[self.index] if self.items else None

    def items_of(self, class_name: str) -> list[QueueItem]:
        """The queue's cells of one class, best first."""
        return [it for it in self.items if it.class_name == class_name]

    def go(self, index: int) -> QueueItem | None:
        """Make item ``index`` current (clamped to the queue) and return it."""
        if not self.items:
            return None
        self.index = min(max(int(index), 0), len(self.items) - 1)
        return self.current

    def next(self) -> QueueItem | None:
        return self.go(self.index + 1)

    def previous(self) -> QueueItem | None:
        return self.go(self.index - 1)

    def position(self, detection_id: int) -> int:
        """Queue index of a detection (ValueError if it is not in the queue)."""
        for i, it in enumerate(self.items):
            if it.detection_id == detection_id:
                return i
        raise ValueError(f"detection {detection_id} is not in the review queue of slide {self.slide_id}")

    def decision(self, item: QueueItem) -> Review | None:
        """The latest review of an item, or None."""
        return self._decisions.get(item.detection_id)

    def decide(self, decision: str, *, reviewer: str, new_label: int | str | None = None) -> Review:
        """Record a decision on the current item in the store now; returns the stored review.

        ``decision`` is one of ``cytolt.store.DECISIONS``; ``reclassify`` needs ``new_label`` (index or name).
        """
        item = self.current
        if item is None:
            raise ValueError(f"slide {self.slide_id}: the review queue is empty")
        review_id = self.store.add_review(item.detection_id, decision, reviewer=reviewer, new_label=new_label)
        review = next(r for r in self.store.reviews(self.slide_id) if r.id == review_id)
        self._decisions[item.detection_id] = review
        return review

    @property
    def progress(self) -> tuple[int, int]:
        """(reviewed, total) items of the queue."""
        done = sum(1 for it in self.items if it.detection_id in self._decisions)
        return done, len(self.items)

    def next_unreviewed(self) -> QueueItem | None:
        """Move to the first unreviewed item after the current one (wrapping); stays put if all are reviewed."""
        n = len(self.items)
        for step in range(1, n + 1):
            j = (self.index + step) % n
            if self.items[j].detection_id not in self._decisions:
                return self.go(j)
        return self.current


# -- thumbnails ------------------------------------------------------------------------------------------------


def cell_thumbnail(
    slide: Slide,
    box: Sequence[float],
    *,
    size: int = 96,
    context: float = 1.6,
    color: Sequence[int] | None = None,
) -> np.ndarray:
    """(size, size, 3) uint8 crop around a box, read through the slide's pyramid.

    The square read has side ``context`` times the larger box side (level-0 px, at least 32 px), centred on the
    box, from the coarsest level that still has at least ``size`` pixels across it; ``color`` draws the box
    outline (1 px) in that (r, g, b).
    """
    import cv2

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(32.0, context * max(x1 - x0, y1 - y0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = math.floor(cx - side / 2), math.floor(cy - side / 2)
    level = slide.best_level_for_downsample(side / size)
    ds = slide.level_downsamples[level]
    n = max(1, round(side / ds))
    crop = slide.read_region((left, top), level, (n, n))
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if n > size else cv2.INTER_LINEAR)
    if color is not None:
        f = size / side
        p0 = (round((x0 - left) * f), round((y0 - top) * f))
        p1 = (round((x1 - left) * f) - 1, round((y1 - top) * f) - 1)
        out = np.ascontiguousarray(out)
        cv2.rectangle(out, p0, p1, tuple(int(c) for c in color), 1)
    return out


# -- a synthetic run for samples, tests and benchmarks -----------------------------------------------------------


def make_demo_run(
    run_dir: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (4096, 4096),
    label: str = "HSIL",
    seed: int = 0,
    mpp: float = 0.25,
    n_detections: int | None = None,
    slide_dir: str | os.PathLike[str] | None = None,
) -> RunSlide:
    """Write a synthetic slide and a run folder whose store holds "detections" of its cells; returns the slide.

    The slide comes from :func:`cytolt.synth.make_slide` (``label`` a Bethesda category, ``mpp`` at level 0)
    into ``slide_dir`` (default ``RUN_DIR/../slides``); a slide of the same recipe already there is reused.
    Every ground-truth cell becomes a detection with its box jittered by up to 4 % and a score from Beta(8, 2);
    one in eight gets a wrong class with a Beta(2, 5) score. ``n_detections`` fixes the total: fewer keeps a
    random subset of the cells, more adds boxes of 20-60 um at random places with random classes and scores
    (a busy model, for benchmarks). The run records a slide scorer (``cytolt.aggregate.SlideScorer``, abnormal
    classes ASC-US and worse) so the summary has a score and a call. No report.json is written. Deterministic
    in ``seed``.
    """
    from cytolt.aggregate import SlideScorer
    from cytolt.detect.types import Detections
    from cytolt.synth import CLASSES

    run_dir = Path(run_dir)
    slide_dir = run_dir.parent / "slides" if slide_dir is None else Path(slide_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    slide_path = slide_dir / f"demo_{label.lower().replace('-', '')}_{seed}_{size[0]}x{size[1]}.tiff"
    cells = _demo_slide(slide_path, size=size, mpp=mpp, label=label, seed=seed)
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    boxes = np.array([box for box, _ in cells], dtype=np.float64).reshape(-1, 4)
    labels = np.array([names.index(name) for _, name in cells], dtype=np.int64)
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    boxes = boxes + rng.uniform(-0.04, 0.04, boxes.shape) * wh
    scores = rng.beta(8, 2, len(labels))
    wrong = rng.random(len(labels)) < 1 / 8
    labels[wrong] = (labels[wrong] + rng.integers(1, len(names), wrong.sum())) % len(names)
    scores[wrong] = rng.beta(2, 5, wrong.sum())
    if n_detections is not None and n_detections < len(labels):
        keep = np.sort(rng.choice(len(labels), size=max(0, n_detections), replace=False))
        boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    n_random = 0 if n_detections is None else n_detections - len(labels)
    if n_random > 0:
        side = rng.uniform(20, 60, n_random) / mpp
        x0 = rng.uniform(0, size[0] - side)
        y0 = rng.uniform(0, size[1] - side)
        extra = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
        boxes = np.concatenate([boxes, extra])
        labels = np.concatenate([labels, rng.integers(0, len(names), n_random)])
        scores = np.concatenate([scores, rng.random(n_random)])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, size[0])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, size[1])
    abnormal = ["ascus", "lsil", "hsil", "scc", "agc"]
    scorer = SlideScorer(class_names=names, abnormal_classes=abnormal)
    with DetectionStore(run_dir / RUN_STORE) as store:
        run_id = store.add_run(
            model="synthetic ground truth (cytolt.review.make_demo_run)", params={"scorer": scorer.to_dict()}
        )
        sid = store.add_slide(slide_path.absolute(), mpp=(mpp, mpp), dims=size, label=label, run_id=run_id)
        store.replace_detections(
            sid,
            Detections(boxes=boxes.astype(np.float32), scores=scores.astype(np.float32), labels=labels),
            names,
        )
        store.set_slide_status(sid, "done")
    return open_run(run_dir, slide=sid)


def _demo_slide(
    path: Path, *, size: tuple[int, int], mpp: float, label: str, seed: int
) -> list[tuple[tuple[float, float, float, float], str]]:
    """The demo slide's cells as (box, class), writing the slide unless one of the same recipe is there."""
    from cytolt.synth import cells_path_for, make_slide

    recipe = {"seed": seed, "label": label, "width": size[0], "height": size[1], "mpp": mpp}
    cells_path = cells_path_for(path)
    if path.is_file() and cells_path.is_file():
        try:
            truth = json.loads(cells_path.read_text())
            if all(truth.get(k) == v for k, v in recipe.items()):
                return [(tuple(c["box"]), c["class"]) for c in truth["cells"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: write it again
    truth = make_slide(path, size=size, mpp=mpp, label=label, seed=seed, workers=1)
    return [(c.box, c.label) for c in truth.cells]


def cached_demo_run(cache_dir: str | os.PathLike[str], **kwargs: Any) -> RunSlide:
    """:func:`make_demo_run` into ``cache_dir/run`` once; later calls reuse it (built in a temporary folder, then renamed)."""
    cache_dir = Path(cache_dir)
    run_dir = cache_dir / "run"
    if (run_dir / RUN_STORE).is_file():
        run = open_run(run_dir)
        if run.slide_path is not None:
            return run
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        make_demo_run(tmp / "run", slide_dir=cache_dir / "slides", **kwargs)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        (tmp / "run").rename(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_run(run_dir)


def open_slide_quiet(path: str | os.PathLike[str]) -> Slide | None:
    """``open_slide(path)`` or None when cytolt.io cannot read it (for readers, which must never raise)."""
    try:
        return open_slide(path)
    except (SlideError, ValueError, OSError):
        return None
