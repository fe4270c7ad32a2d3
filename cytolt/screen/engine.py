"""Screen one whole slide: tiles at the model's resolution -> detector -> level-0 boxes -> merge -> score.

    result = screen_slide("HSIL_01.svs", detector, ScreenSettings(tile_size=512))   # computes, writes nothing

Glossary (the settings' own words are in :mod:`cytolt.screen.settings`):

- *read mpp*: microns per pixel of the tiles the detector sees (the model's ``ModelInfo.mpp`` unless the
  settings give one); tiles are resampled to it by ``Slide.read_at_mpp``. ``None`` reads level-0 pixels.
- *slide opens*: the slide is opened once here (its tissue mask, grid and metadata) and once more by each tile
  reading thread (``ScreenSettings.read_threads``); with no threads the tiles are read from the same handle.
- *scale* ``(sx, sy)``: level-0 pixels per tile pixel, ``read_mpp / slide_mpp``; a tile box ``b`` maps to the
  slide as ``b * scale + (x, y)``, the tile's level-0 origin.
- *overlap*: tile pixels shared by neighbouring tiles. It must be at least the largest cell, so that a cell cut
  by one tile's border lies whole inside its neighbour and :func:`~cytolt.screen.merge.merge_tiles` can drop the
  cut view (rule 1) and keep the whole one.
- *timings* (seconds, wall clock): ``open`` (open the file), ``mask`` (tissue mask and grid),
  ``read`` (time the loop waited for tiles: the reading the prefetch threads could not hide), ``focus`` (each
  tile's sharpness, :mod:`cytolt.io.focus`), ``model`` (inside
  ``detector.predict``, outputs moved to the CPU), ``merge`` (tile boxes to level 0, cross-tile merging),
  ``classify`` (the second stage: crops read and re-scored by the cell classifier, its loading on the first
  slide of a process included; 0 without one), ``store`` (the recorder's fingerprint and SQLite writes),
  ``score`` (slide scoring), ``total``.
- *second stage*: with ``ScreenSettings.classifier`` (or a :class:`~cytolt.screen.second_stage.SecondStage`
  given), the cells' most suspicious ``top_n`` are re-scored on crops after the merge and before the scorer
  (:func:`~cytolt.screen.second_stage.rescore_cells`); ``SlideResult.second_stage`` keeps both scores.

The flow follows ARCHITECTURE.md ("Data flow (screening)"); docs/screening.md shows it with the outputs.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cytolt import bethesda
from cytolt.adequacy import AdequacyRules, SlideQuality
from cytolt.detect.types import Detections
from cytolt.io import Slide, SlideError, TileGrid, TileStream, open_slide, tissue_mask
from cytolt.io.focus import tile_focus
from cytolt.screen.cells import group_cells
from cytolt.screen.merge import merge_tiles
from cytolt.screen.second_stage import Rescored, SecondStage, load_second_stage, rescore_cells
from cytolt.screen.settings import ScreenSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cytolt.aggregate import SlideScore, SlideScorer
    from cytolt.detect import Detector, ModelInfo

__all__ = [
    "STAGES",
    "SlideResult",
    "SlideTimeout",
    "attempt_slide",
    "default_scorer",
    "detections_per_class",
    "detector_name",
    "error_message",
    "failed_result",
    "screen_slide",
    "slide_fingerprint",
    "tile_grid",
]

STAGES = ("open", "mask", "read", "focus", "model", "merge", "classify", "store", "score", "total")
# Fingerprint of a slide file: its size and the first and last MiB, hashed. Hashing whole multi-GB slides
# would cost more than screening them; scanners never rewrite a file in the middle and keep its length.
_FINGERPRINT_BYTES = 1 << 20


class SlideTimeout(SlideError):
    """A slide took longer than its ``timeout``; the message says how far it got.

    A :class:`~cytolt.io.SlideError`, so a batch run records the slide as failed and goes on.
    """


@dataclass(frozen=True, kw_only=True)
class SlideResult:
    """What screening one slide produced; see the module glossary for timings.

    Attributes:
        path: the slide file as given.
        status: ``"done"`` or ``"failed"`` (then ``error`` says why and the counts are empty).
        dimensions: level-0 (width, height) px, None if the slide could not be opened.
        mpp: (x, y) microns per level-0 pixel of the slide, None if unknown.
        mpp_source: where ``mpp`` came from: ``"file"`` (the slide's metadata) or ``"given"``
            (``ScreenSettings.slide_mpp``, ``--mpp``); None when the slide was not opened.
        read_mpp: (x, y) microns per tile pixel the detector saw; None when tiles were level-0 pixels.
        tile_size, overlap: tile side and overlap in tile pixels.
        tiles_read: tiles that went through the detector; tiles_total: tiles of the grid before the tissue mask.
        detections: the slide's cells, one detection each (:func:`~cytolt.screen.cells.group_cells`: boxes of
            different classes on one cell merged, ``class_scores`` (N, C) kept), boxes (N, 4) xyxy float32 in
            level-0 px, sorted by descending score.
        class_names: the detector's classes, in label order.
        counts: cells per class name (every class present, zero included; no score threshold).
        quality: the tiles read (level-0 rectangles), their sharpness and cellular fraction
            (:mod:`cytolt.io.focus`): what the slide's adequacy is judged on.
        score: the slide-level result, None without a scorer.
        timings: seconds per stage (``STAGES``).
        slide_id: row id in the detection store, None without a store.
        vendor: the slide format name ('aperio', 'generic-tiff', ...); never other metadata.
        backend: the reader that decoded it ('tifffile', 'openslide'; ``Slide.backend``).
        model_name: the model folder's name, or the detector's class name.
        second_stage: what the second stage did (:class:`~cytolt.screen.second_stage.Rescored`: the rows
            of ``detections`` it re-scored, the detector's and the classifier's probabilities of each); None
            without one.
    """

    path: Path
    status: str
    error: str | None = None
    dimensions: tuple[int, int] | None = None
    mpp: tuple[float, float] | None = None
    mpp_source: str | None = None
    read_mpp: tuple[float, float] | None = None
    tile_size: int = 0
    overlap: int = 0
    tiles_read: int = 0
    tiles_total: int = 0
    detections: Detections = field(default_factory=Detections.empty)
    class_names: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    score: SlideScore | None = None
    quality: SlideQuality = field(default_factory=SlideQuality.empty)
    timings: dict[str, float] = field(default_factory=dict)
    slide_id: int | None = None
    vendor: str | None = None
    backend: str | None = None
    model_name: str | None = None
    second_stage: Rescored | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def default_scorer(
    info: ModelInfo, *, k: int = 10, adequacy: AdequacyRules | None = None
) -> SlideScorer | None:
    """A :class:`~cytolt.aggregate.SlideScorer` for a model's classes with default thresholds (0.5).

    Abnormal classes are those the Bethesda vocabulary calls abnormal (:data:`cytolt.bethesda.ABNORMAL`:
    ascus, asch, lsil, hsil, scc, agc, ais, adenocarcinoma); None when the model has none, since a slide call
    then means nothing. ``adequacy`` defaults to Bethesda's (5,000 well-visualised squamous cells).
    """
    from cytolt.aggregate import SlideScorer

    abnormal = bethesda.classes_in(info.classes, bethesda.ABNORMAL)
    if not abnormal:
        return None
    return SlideScorer(class_names=info.classes, abnormal_classes=abnormal, k=k, adequacy=adequacy)


def slide_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """``"sha256:<hex>"`` of the file's size, first and last MiB; None when the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha256(str(size).encode())
            digest.update(fh.read(_FINGERPRINT_BYTES))
            if size > _FINGERPRINT_BYTES:
                fh.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                digest.update(fh.read(_FINGERPRINT_BYTES))
    except OSError:
        return None
    return "sha256:" + digest.hexdigest()


def tile_grid(slide: Slide, *, tile_size: int, overlap: int, mpp: float | None) -> TileGrid:
    """The tiles :func:`screen_slide` reads, in the order it passes them to the detector.

    Tiles of ``tile_size`` px at ``mpp`` (level-0 pixels when None), ``overlap`` px shared, those without any
    foreground in the slide's :func:`~cytolt.io.tissue_mask` left out; row-major.
    """
    return TileGrid(slide, tile_size=tile_size, overlap=overlap, mpp=mpp, mask=tissue_mask(slide))


class _Clock:
    """Seconds per stage; ``with clock("read"):`` adds the block's wall time to that stage."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0

    def done(self) -> dict[str, float]:
        self.seconds["total"] = time.perf_counter() - self.start
        return {k: round(v, 6) for k, v in self.seconds.items()}


def screen_slide(
    slide: Slide | str | os.PathLike[str],
    detector: Detector,
    settings: ScreenSettings | None = None,
    *,
    scorer: SlideScorer | None = None,
    progress: Callable[[int, int], Any] | None = None,
    second_stage: SecondStage | None = None,
) -> SlideResult:
    """Detect every cell of a slide and return the merged level-0 detections, counts, score and timings.

    Computes only: nothing is written anywhere (:class:`~cytolt.screen.recorder.RunRecorder` records results).

    Args:
        slide: an open :class:`~cytolt.io.Slide` (left open) or a path (opened and closed here).
        detector: anything implementing :class:`~cytolt.detect.Detector`.
        settings: how to screen (default ``ScreenSettings()``); the read mpp and overlap the settings leave
            open are filled in for the detector's model (:meth:`ScreenSettings.for_model`).
        scorer: slide-level scoring of the merged detections; None skips it (``result.score`` is None).
        progress: called as ``progress(tiles_done, tiles_total)`` after each batch is read.
        second_stage: re-score the top cells with this classifier; None: the one ``settings.classifier``
            names, if any (loaded once per process).

    Raises:
        SlideError: the slide cannot be opened or read.
        SlideTimeout: ``settings.timeout`` ran out.
        ValueError: a detector that returns the wrong number of results or unknown labels; a second stage
            whose classes are not the detector's (before the slide is opened).
    """
    return _screen(slide, detector, settings or ScreenSettings(), scorer, progress, _Clock(), second_stage)


def attempt_slide(
    path: str | os.PathLike[str],
    detector: Detector,
    settings: ScreenSettings,
    *,
    scorer: SlideScorer | None = None,
    progress: Callable[[int, int], Any] | None = None,
    second_stage: SecondStage | None = None,
) -> SlideResult:
    """:func:`screen_slide` of one slide file of a run: any failure in it comes back as a failed result.

    The failed result carries the message (:func:`error_message`) and the timings of the stages that ran, so a
    batch run records it and goes on. KeyboardInterrupt and other BaseExceptions still propagate.
    """
    clock = _Clock()
    try:
        return _screen(path, detector, settings, scorer, progress, clock, second_stage)
    except Exception as exc:
        return failed_result(path, error_message(exc), detector=detector, timings=clock.done())


def _screen(
    slide: Slide | str | os.PathLike[str],
    detector: Detector,
    settings: ScreenSettings,
    scorer: SlideScorer | None,
    progress: Callable[[int, int], Any] | None,
    clock: _Clock,
    second_stage: SecondStage | None = None,
) -> SlideResult:
    settings = settings.for_model(detector.info)
    assert settings.overlap is not None  # for_model fills it in
    class_names = tuple(detector.info.classes)
    if second_stage is not None:
        second_stage.class_map(class_names)  # a mismatch fails before the slide is opened
    owned = not isinstance(slide, Slide)
    path = Path(slide) if owned else Path(slide.path)  # type: ignore[union-attr]
    handle: Slide | None = None
    try:
        with clock("open"):
            handle = open_slide(path, mpp=settings.slide_mpp) if owned else slide  # type: ignore[assignment]
        assert handle is not None
        with clock("mask"):
            grid = tile_grid(
                handle, tile_size=settings.tile_size, overlap=settings.overlap, mpp=settings.read_mpp
            )
        scale = _scale(handle, grid)
        per_tile, sharpness, cellular = _detect(grid, handle, detector, clock, settings, progress)
        with clock("merge"):
            placed = [
                _clip(d.scale(scale).translate(float(x), float(y)), handle.dimensions)
                for d, (x, y, _, _) in zip(per_tile, grid.xywh, strict=True)
            ]
            merged = merge_tiles(placed, grid.xywh, method=settings.merge)
            cells = group_cells(merged, len(class_names))
        rescored = None
        with clock("classify"):
            stage = second_stage or load_second_stage(settings, detector.device)
            if stage is not None:
                cells, rescored = rescore_cells(handle, cells, class_names, stage, scorer=scorer)
        counts = detections_per_class(cells, class_names)
        quality = SlideQuality(np.asarray(grid.xywh, dtype=np.float64).reshape(-1, 4), sharpness, cellular)
        score = None
        if scorer is not None:
            with clock("score"):
                seen = None if rescored is None else rescored.detector_cells(cells)
                score = scorer.score(cells, quality, adequacy_dets=seen)
        return SlideResult(
            path=path,
            status="done",
            dimensions=handle.dimensions,
            mpp=handle.mpp,
            mpp_source="given" if owned and settings.slide_mpp is not None else "file",
            read_mpp=grid.mpp,
            tile_size=settings.tile_size,
            overlap=settings.overlap,
            tiles_read=len(grid),
            tiles_total=grid.total,
            detections=cells,
            class_names=class_names,
            counts=counts,
            score=score,
            quality=quality,
            timings=clock.done(),
            vendor=handle.vendor,
            backend=handle.backend,
            model_name=detector_name(detector),
            second_stage=rescored,
        )
    finally:
        if owned and handle is not None:
            handle.close()


def failed_result(
    path: str | os.PathLike[str],
    error: str,
    *,
    detector: Detector | None = None,
    slide_id: int | None = None,
    timings: dict[str, float] | None = None,
) -> SlideResult:
    """The :class:`SlideResult` of a slide that could not be screened (``status="failed"``)."""
    return SlideResult(
        path=Path(path),
        status="failed",
        error=error,
        class_names=() if detector is None else tuple(detector.info.classes),
        slide_id=slide_id,
        timings=dict(timings or {}),
        model_name=None if detector is None else detector_name(detector),
    )


def error_message(exc: BaseException) -> str:
    """What the store and reports say about a failure: a SlideError's own message, "interrupted" for Ctrl-C."""
    if isinstance(exc, SlideError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _detect(
    grid: TileGrid,
    slide: Slide,
    detector: Detector,
    clock: _Clock,
    settings: ScreenSettings,
    progress: Callable[[int, int], Any] | None,
) -> tuple[list[Detections], np.ndarray, np.ndarray]:
    """Per-tile detections in tile pixels, on the CPU, in grid order, and each tile's sharpness and cellular
    fraction (:func:`~cytolt.io.focus.tile_focus`, measured on the very pixels the detector gets).

    Raises SlideTimeout after the first batch that ends more than ``settings.timeout`` s after ``clock``
    started, unless it was the last one.
    """
    timeout = settings.timeout
    deadline = math.inf if timeout is None else clock.start + timeout
    stream = TileStream(
        grid, batch_size=settings.batch_size, workers=settings.read_threads, progress=progress, slide=slide
    )
    out: list[Detections] = []
    sharpness: list[np.ndarray] = []
    cellular: list[np.ndarray] = []
    batches = iter(stream)
    try:
        while True:
            with clock("read"):
                batch = next(batches, None)
            if batch is None:
                break
            with clock("focus"):
                sharp, cells = tile_focus(batch.images.permute(0, 2, 3, 1).numpy())
                sharpness.append(sharp)
                cellular.append(cells)
            with clock("model"):
                # Moving the outputs to the CPU synchronises a GPU, so "model" is the model's real time.
                dets = [d.to("cpu") for d in detector.predict(batch.images)]
            if len(dets) != len(batch):
                raise ValueError(
                    f"{type(detector).__name__}.predict returned {len(dets)} results for {len(batch)} images"
                )
            out.extend(dets)
            if time.perf_counter() > deadline and len(out) < len(grid):
                raise SlideTimeout(
                    grid.spec.path, f"timed out after {timeout:g} s ({len(out)} of {len(grid)} tiles)"
                )
    finally:
        batches.close()  # stops and joins the reader threads when the detector raised
    if not out:
        return out, np.zeros(0), np.zeros(0)
    return out, np.concatenate(sharpness), np.concatenate(cellular)


def _clip(dets: Detections, dimensions: tuple[int, int]) -> Detections:
    """Boxes clipped to the slide; boxes left without area (wholly in the white past the edge) dropped.

    The last row and column of tiles run past the slide's edge, where a detector sees only white padding.
    """
    if len(dets) == 0:
        return dets
    w, h = dimensions
    b = dets.boxes
    clipped = torch.stack(
        [b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1
    )
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return Detections(
        boxes=clipped, scores=dets.scores, labels=dets.labels, class_scores=dets.class_scores
    ).select(keep)


def _scale(slide: Slide, grid: TileGrid) -> tuple[float, float]:
    """Level-0 pixels per tile pixel: the ratio ``Slide.read_at_mpp`` resamples by, or 1 for level-0 tiles."""
    if grid.mpp is None:
        ds = slide.level_downsamples[grid.level or 0]
        return float(ds), float(ds)
    assert slide.mpp is not None  # TileGrid raised SlideError otherwise
    return grid.mpp[0] / slide.mpp[0], grid.mpp[1] / slide.mpp[1]


def detections_per_class(dets: Detections, class_names: Sequence[str]) -> dict[str, int]:
    """Detections per class name (no score threshold), every class present (zero included); ValueError for an unknown label."""
    labels = dets.labels.cpu().numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"detector labels must be in [0, {len(class_names)}); got range [{labels.min()}, {labels.max()}]"
        )
    n = np.bincount(labels, minlength=len(class_names)) if len(labels) else np.zeros(len(class_names), int)
    return {name: int(n[i]) for i, name in enumerate(class_names)}


def detector_name(detector: Detector) -> str:
    """The model folder's name, or the detector's class name when it has no folder."""
    return Path(detector.info.path).name or type(detector).__name__
