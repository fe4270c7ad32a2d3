"""cytolt.report.thumbnails: a cell's crop, shared by the report gallery and the review widget."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cytolt.io import open_slide
from cytolt.report.thumbnails import cell_thumbnail


def test_cell_thumbnail_is_the_box_neighbourhood(report_slide: Path):
    with open_slide(report_slide) as slide:
        box = (600.0, 700.0, 700.0, 760.0)
        thumb = cell_thumbnail(slide, box, size=64, context=1.0)
        assert thumb.shape == (64, 64, 3) and thumb.dtype == np.uint8
        # context 1: the crop is the box's square (100 px from x=600, y=680) shrunk 100 -> 64
        ref = cv2.resize(slide.read_region((600, 680), 0, (100, 100)), (64, 64), interpolation=cv2.INTER_AREA)
        assert np.abs(thumb.astype(int) - ref).max() <= 1
        outlined = cell_thumbnail(slide, box, size=64, context=1.0, color=(255, 0, 255))
        assert np.all(outlined[13, 10:50] == (255, 0, 255))  # top edge of the box at y = 20 * 0.64
        # min_side widens the read around a small cell: 200 px from (550, 550) shrunk to 50 (4 px per px),
        # so the 20 px box [640, 660) spans crop pixels 22.5 .. 27.5, drawn from 22 to 27 (round half even)
        wide = cell_thumbnail(slide, (640, 640, 660, 660), size=50, min_side=200, color=(255, 0, 255))
        ys, xs = np.nonzero((wide == (255, 0, 255)).all(axis=-1))
        assert (ys.min(), ys.max(), xs.min(), xs.max()) == (22, 27, 22, 27)
