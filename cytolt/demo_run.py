"""A synthetic run folder to review: a slide from :mod:`cytolt.synth` and a store of "detections" of its cells.

Used by the napari plugin's sample data, its tests and the viewer benchmark; it imports :mod:`cytolt.synth`,
which is why it lives beside :mod:`cytolt.demo` and not in :mod:`cytolt.review`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cytolt import bethesda
from cytolt.adequacy import MIN_SQUAMOUS_FRACTION, AdequacyRules
from cytolt.review import RunSlide, open_run
from cytolt.store import DetectionStore, RunFolder

__all__ = ["cached_demo_run", "make_demo_run"]

# abnormal classes of cytolt.synth.CLASSES: ASC-US and worse (The Bethesda System)
ABNORMAL = ("ascus", "lsil", "hsil", "scc", "agc")


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
    classes ASC-US and worse) so the summary has a score and a call, and the class colours
    (:data:`cytolt.synth.CLASS_COLORS`, read by :func:`cytolt.review.class_colors`). No report.json is
    written. Deterministic in ``seed``.
    """
    from cytolt.aggregate import SlideScorer
    from cytolt.detect.types import Detections
    from cytolt.synth import CLASS_COLORS, CLASSES

    run = RunFolder(run_dir).create()
    slide_dir = run.path.parent / "slides" if slide_dir is None else Path(slide_dir)
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
    # What a screening run records besides detections: the tiles it examined with their focus, and a scorer
    # whose adequacy minimum suits a slide this small (the rule fit_slide_scorer applies to calibration slides).
    tiles, sharpness, cellular = _examined_tiles(slide_path)
    squamous = sum(bethesda.class_key(name) in bethesda.SQUAMOUS for _, name in cells)
    adequacy = AdequacyRules(min_squamous_cells=int(MIN_SQUAMOUS_FRACTION * squamous))
    scorer = SlideScorer(class_names=names, abnormal_classes=list(ABNORMAL), adequacy=adequacy)
    params = {"scorer": scorer.to_dict(), "colors": {n: list(CLASS_COLORS[n]) for n in names}}
    with DetectionStore(run.store_path) as store:
        run_id = store.add_run(model="synthetic ground truth (cytolt.demo_run.make_demo_run)", params=params)
        sid = store.add_slide(slide_path.absolute(), mpp=(mpp, mpp), dims=size, label=label, run_id=run_id)
        store.replace_detections(
            sid,
            Detections(boxes=boxes.astype(np.float32), scores=scores.astype(np.float32), labels=labels),
            names,
        )
        store.replace_tiles(sid, tiles, sharpness, cellular)
        store.set_slide_status(sid, "done")
    return open_run(run.path, slide=sid)


def _examined_tiles(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slide's 512-px tiles at 0.5 um/px (level-0 xywh) with their measured focus (cytolt.io.focus)."""
    from cytolt.io import TileGrid, open_slide, tissue_mask
    from cytolt.io.focus import tile_focus

    with open_slide(path) as slide:
        grid = TileGrid(slide, tile_size=512, overlap=0, mpp=0.5, mask=tissue_mask(slide))
        pixels = np.stack([grid.read(slide, i) for i in range(len(grid))]) if len(grid) else None
    xywh = np.asarray(grid.xywh, dtype=np.float64).reshape(-1, 4)
    if pixels is None:
        return xywh, np.zeros(0), np.zeros(0)
    sharpness, cellular = tile_focus(pixels)
    return xywh, sharpness, cellular


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
    run = RunFolder(cache_dir / "run")
    if run.exists():
        found = open_run(run.path)
        if found.slide_path is not None:
            return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        make_demo_run(tmp / "run", slide_dir=cache_dir / "slides", **kwargs)
        if run.path.exists():
            shutil.rmtree(run.path)
        (tmp / "run").rename(run.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_run(run.path)
