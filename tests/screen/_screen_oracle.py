"""An oracle detector for screening tests: it "detects" the ground-truth cells of a synthetic slide.

It implements the :class:`cytolt.detect.Detector` protocol (``info``, ``device``, ``predict(images)``) and knows
where each image lies on the slide because the engine passes tiles in the order of
:func:`cytolt.screen.engine.tile_grid`, which the oracle builds too; it counts the images it has seen. Every
image is compared with the pixels of the tile it should be, so a change of tile order, resampling or grid makes
the oracle fail loudly instead of answering for the wrong place.

Per tile it reports, in tile pixels (rounded to whole pixels, as a detector's resolution allows):

- each ground-truth cell lying wholly inside the tile, with its class and a fixed per-cell score;
- each cell cut by the tile border with at least ``min_visible`` of its box inside, as the visible part of
  the box with a lower score: a real detector reports such cut views, and merging must drop them.

Tests import it with ``sys.path`` pointing at this folder (tests have no packages).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from cytolt.detect import Detections, ModelInfo
from cytolt.io import open_slide
from cytolt.screen.engine import tile_grid
from cytolt.synth import CLASS_COLORS, CLASSES, cells_path_for

CUT_SCORE = 0.35


class OracleDetector:
    """Ground truth of ``slide_path`` as seen through the engine's tile grid (see the module docstring).

    After screening: ``whole[i]`` tiles that held cell ``i`` whole, ``cut[i]`` tiles that reported a cut view.
    """

    def __init__(
        self,
        slide_path: str | Path,
        *,
        tile_size: int,
        overlap: int,
        mpp: float | None,
        min_visible: float = 0.3,
        check_pixels: bool = True,
        class_scores: bool = True,
    ) -> None:
        truth = json.loads(cells_path_for(slide_path).read_text())
        self.boxes = np.array([c["box"] for c in truth["cells"]], dtype=np.float64).reshape(-1, 4)
        self.labels = np.array([CLASSES.index(c["class"]) for c in truth["cells"]], dtype=np.int64)
        # Fixed, varied scores in (0.55, 0.95) so rankings and histograms have something to show.
        self.scores = 0.55 + 0.4 * ((np.arange(len(self.boxes)) * 0.6180339887) % 1.0)
        self.info = ModelInfo(
            classes=CLASSES,
            colors=tuple(CLASS_COLORS[c] for c in CLASSES),
            mpp=mpp,
            path=Path("oracle"),
        )
        self.device = torch.device("cpu")
        self.slide = open_slide(slide_path)
        self.grid = tile_grid(self.slide, tile_size=tile_size, overlap=overlap, mpp=mpp)
        if mpp is None:
            self.scale = (1.0, 1.0)
        else:
            self.scale = (mpp / self.slide.mpp[0], mpp / self.slide.mpp[1])
        self.tile_size = tile_size
        self.min_visible = min_visible
        self.check_pixels = check_pixels
        self.with_class_scores = class_scores
        self.seen = 0
        self.whole: Counter[int] = Counter()
        self.cut: Counter[int] = Counter()

    def close(self) -> None:
        self.slide.close()

    def predict(self, images: torch.Tensor) -> list[Detections]:
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"oracle wants (B, 3, H, W) uint8; got {tuple(images.shape)} {images.dtype}")
        out = []
        for image in images:
            index = self.seen
            if index >= len(self.grid):
                raise AssertionError(f"oracle got image {index + 1} but the grid has {len(self.grid)} tiles")
            if self.check_pixels:
                expected = self.grid.read(self.slide, index)
                got = image.permute(1, 2, 0).numpy()
                if not np.array_equal(got, expected):
                    raise AssertionError(f"image {index} is not tile {index} of the grid {self.grid}")
            self.seen += 1
            out.append(self._tile_detections(index))
        return out

    def _tile_detections(self, index: int) -> Detections:
        x, y = (float(v) for v in self.grid.xywh[index, :2])
        sx, sy = self.scale
        tile = np.array([x, y, x + self.tile_size * sx, y + self.tile_size * sy])
        b = self.boxes
        inter = np.c_[np.maximum(b[:, :2], tile[:2]), np.minimum(b[:, 2:], tile[2:])]
        iw = np.clip(inter[:, 2] - inter[:, 0], 0, None)
        ih = np.clip(inter[:, 3] - inter[:, 1], 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        whole = (b[:, 0] >= tile[0]) & (b[:, 1] >= tile[1]) & (b[:, 2] <= tile[2]) & (b[:, 3] <= tile[3])
        cut = ~whole & (iw * ih >= self.min_visible * area)
        for i in np.flatnonzero(whole):
            self.whole[int(i)] += 1
        for i in np.flatnonzero(cut):
            self.cut[int(i)] += 1
        keep = np.flatnonzero(whole | cut)
        boxes = np.round((inter[keep] - np.tile(tile[:2], 2)) / np.array([sx, sy, sx, sy]))
        scores = np.where(whole[keep], self.scores[keep], CUT_SCORE)
        labels = self.labels[keep]
        class_scores = None
        if self.with_class_scores:
            class_scores = np.full((len(keep), len(CLASSES)), 0.01)
            class_scores[np.arange(len(keep)), labels] = scores
        return Detections(boxes=boxes, scores=scores, labels=labels, class_scores=class_scores)


class OracleSequence:
    """Oracles for several slides screened one after another by the same detector (``screen_slides``).

    Give it the slides that reach the model, in screening order; it moves on to the next slide's oracle once
    the current one has seen every tile of its grid. Slides that fail before the model are simply left out.
    """

    def __init__(self, slide_paths: list[Path], **oracle_kwargs: object) -> None:
        self.oracles = [OracleDetector(p, **oracle_kwargs) for p in slide_paths]  # type: ignore[arg-type]
        self.info = self.oracles[0].info
        self.device = torch.device("cpu")
        self.current = 0

    def predict(self, images: torch.Tensor) -> list[Detections]:
        while self.oracles[self.current].seen == len(self.oracles[self.current].grid):
            self.current += 1
        return self.oracles[self.current].predict(images)

    def close(self) -> None:
        for oracle in self.oracles:
            oracle.close()
