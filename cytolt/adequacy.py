"""Specimen adequacy: was the slide adequately examined? Decided before any interpretation is made of it.

Bethesda reports adequacy first (Nayar & Wilbur 2015): a liquid-based specimen is *satisfactory* with an
estimated >= 5,000 well-visualised squamous cells, and *unsatisfactory* when more than 75% of its squamous cells
are obscured (here: out of focus); cytolt adds what only a scanner pipeline can get wrong: no cellular area at
all, and tiles that could not be read. An unsatisfactory slide is never called negative (NILM).

Glossary (one slide; T tiles read, N cells):

- ``tiles_xywh`` (T, 4): the tiles' level-0 rectangles; ``sharpness`` (T,): :func:`cytolt.io.focus.tile_focus`
  (NaN: too little cellular area to judge); ``cellular`` (T,): each tile's fraction of cellular pixels.
- a tile is *out of focus* when its sharpness is below ``focus_threshold``; the slide's out-of-focus fraction
  is the cellular area of those tiles over the cellular area of all judged tiles.
- a cell is *well visualised* when its centre lies in an in-focus tile; the squamous count is the well-visualised
  cells whose label is a squamous class (:data:`cytolt.bethesda.SQUAMOUS`) at the scorer's confidence threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cytolt.io.focus import DEFAULT_FOCUS_THRESHOLD

__all__ = [
    "MIN_SQUAMOUS_FRACTION",
    "SATISFACTORY",
    "UNSATISFACTORY",
    "Adequacy",
    "AdequacyRules",
    "SlideQuality",
    "assess_adequacy",
]

# The adequacy minimum as a share of a typical slide's squamous cells: Bethesda's 5,000 of the 50-75 thousand
# cells of a ThinPrep spot (DOMAIN.md; cytolt.synth.classes), i.e. 5,000 / 62,500. Applied to the squamous count
# of slides smaller than a real spot (synthetic ones, a lab's crops), it gives a minimum that means the same.
MIN_SQUAMOUS_FRACTION = 5000 / 62500
SATISFACTORY = "satisfactory"
UNSATISFACTORY = "unsatisfactory"


@dataclass(frozen=True, kw_only=True)
class AdequacyRules:
    """When a slide counts as adequately examined.

    Attributes:
        min_squamous_cells: well-visualised squamous cells needed; 5,000 is Bethesda's ThinPrep minimum. Small
            synthetic slides hold far fewer cells, so the demo writes its own calibrated value into the model's
            ``scorer.json``; ``cytolt screen --min-squamous`` overrides it.
        max_out_of_focus: largest out-of-focus fraction of the cellular area (Bethesda: > 75% obscured is
            unsatisfactory).
        focus_threshold: tile sharpness below which a tile is out of focus (:mod:`cytolt.io.focus`).
        max_unreadable_tiles: tiles that may fail to read before the slide is unsatisfactory.
    """

    min_squamous_cells: int = 5000
    max_out_of_focus: float = 0.75
    focus_threshold: float = DEFAULT_FOCUS_THRESHOLD
    max_unreadable_tiles: int = 0

    def __post_init__(self) -> None:
        if self.min_squamous_cells < 0 or self.max_unreadable_tiles < 0:
            raise ValueError("min_squamous_cells and max_unreadable_tiles must be >= 0")
        if not 0.0 <= self.max_out_of_focus <= 1.0:
            raise ValueError(f"max_out_of_focus must be in [0, 1]; got {self.max_out_of_focus}")
        if not self.focus_threshold >= 0:
            raise ValueError(f"focus_threshold must be >= 0; got {self.focus_threshold}")


@dataclass(frozen=True)
class SlideQuality:
    """What the pipeline measured of the examined area (see the module glossary)."""

    tiles_xywh: np.ndarray
    sharpness: np.ndarray
    cellular: np.ndarray
    tiles_unreadable: int = 0

    @classmethod
    def empty(cls) -> SlideQuality:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def in_focus(self, threshold: float) -> np.ndarray:
        """(T,) bool: judged and at least ``threshold`` sharp."""
        return np.nan_to_num(self.sharpness, nan=-1.0) >= threshold

    def out_of_focus_fraction(self, threshold: float) -> float | None:
        """Out-of-focus share of the judged cellular area; None when no tile could be judged."""
        judged = ~np.isnan(self.sharpness)
        area = float(self.cellular[judged].sum())
        if not judged.any() or area <= 0:
            return None
        blurred = judged & ~self.in_focus(threshold)
        return float(self.cellular[blurred].sum()) / area

    def cells_in_focus(self, boxes: np.ndarray, threshold: float) -> np.ndarray:
        """(N,) bool: the centre of each box (N, 4) xyxy lies in at least one in-focus tile."""
        if len(boxes) == 0:
            return np.zeros(0, dtype=bool)
        sharp = self.tiles_xywh[self.in_focus(threshold)]
        if len(sharp) == 0:
            return np.zeros(len(boxes), dtype=bool)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        out = np.zeros(len(boxes), dtype=bool)
        for x, y, w, h in sharp:  # tiles are few (hundreds to thousands); cells are tested in one pass each
            out |= (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)
        return out


@dataclass(frozen=True)
class Adequacy:
    """The adequacy of one slide: ``status`` satisfactory / unsatisfactory, with every reason that applies."""

    status: str
    reasons: tuple[str, ...] = ()
    squamous_cells: int = 0
    min_squamous_cells: int = 0
    out_of_focus_fraction: float | None = None
    tiles_read: int = 0
    tiles_unreadable: int = 0
    focus_threshold: float = DEFAULT_FOCUS_THRESHOLD

    @property
    def satisfactory(self) -> bool:
        return self.status == SATISFACTORY

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "squamous_cells": self.squamous_cells,
            "min_squamous_cells": self.min_squamous_cells,
            "out_of_focus_fraction": self.out_of_focus_fraction,
            "tiles_read": self.tiles_read,
            "tiles_unreadable": self.tiles_unreadable,
        }


def assess_adequacy(
    rules: AdequacyRules,
    quality: SlideQuality,
    *,
    squamous: np.ndarray,
    boxes: np.ndarray,
) -> Adequacy:
    """Judge one slide.

    Args:
        rules: the thresholds.
        quality: the tiles read, their sharpness and cellular area.
        squamous: (N,) bool, the cells counted as squamous (label squamous, confident enough).
        boxes: (N, 4) the cells' level-0 boxes, xyxy.
    """
    tiles = len(quality.tiles_xywh)
    in_focus = quality.cells_in_focus(
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4), rules.focus_threshold
    )
    n_squamous = int((np.asarray(squamous, dtype=bool) & in_focus).sum())
    blurred = quality.out_of_focus_fraction(rules.focus_threshold)
    reasons: list[str] = []
    if tiles == 0 or np.isnan(quality.sharpness).all():
        # no tile read, or none with enough cellular pixels to judge (glass with dust passes the tissue mask)
        reasons.append("no cellular area found: no tile read holds cells")
    if n_squamous < rules.min_squamous_cells:
        reasons.append(
            f"{n_squamous} well-visualised squamous cells, fewer than the {rules.min_squamous_cells} required"
        )
    if blurred is not None and blurred > rules.max_out_of_focus:
        reasons.append(
            f"{blurred:.0%} of the cellular area is out of focus (more than {rules.max_out_of_focus:.0%})"
        )
    if quality.tiles_unreadable > rules.max_unreadable_tiles:
        reasons.append(
            f"{quality.tiles_unreadable} of {tiles + quality.tiles_unreadable} tiles could not be read"
        )
    return Adequacy(
        status=UNSATISFACTORY if reasons else SATISFACTORY,
        reasons=tuple(reasons),
        squamous_cells=n_squamous,
        min_squamous_cells=rules.min_squamous_cells,
        out_of_focus_fraction=blurred,
        tiles_read=tiles,
        tiles_unreadable=quality.tiles_unreadable,
        focus_threshold=rules.focus_threshold,
    )


def reasons_text(reasons: Sequence[str]) -> str:
    """One line for a console or CSV cell: the reasons joined by "; "."""
    return "; ".join(reasons)
