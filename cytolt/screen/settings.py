"""How slides are screened: one frozen, validated value, built once and passed down the whole screening path.

    settings = ScreenSettings(tile_size=512, read_threads=2)      # ValueError here for anything unusable
    settings = settings.for_model(detector.info)                   # read mpp and overlap filled in
    settings.identity()                                            # what --resume compares

Glossary:

- *read mpp*: microns per tile pixel, what the detector sees; None takes the model's ``ModelInfo.mpp``, and
  a model without one reads level-0 pixels as they are.
- *overlap*: tile pixels shared by neighbouring tiles; None gives :func:`default_overlap` (a
  ``MAX_CELL_UM`` cell), at most half a tile. It must hold the largest cell whole, so that the cross-tile merge
  can drop a cell's cut view for the whole one.
- *identity*: the settings that change a slide's detections (tile size, overlap, merge, read mpp; with a second
  stage also the classifier folder's identity, top n and combination). Batch size, read threads, device,
  timeout and the HTML page do not, so a slide screened with other values of those is still "the same result"
  for ``--resume``.
- *second stage*: ``classifier``, a cell classifier's model folder (``cytolt classify train``) that re-scores the
  ``classifier_top_n`` most suspicious cells of each slide (:mod:`cytolt.screen.second_stage`). The folder is
  read (and hashed) when the settings are made, and its class table is checked against the detector's in
  :meth:`ScreenSettings.for_model`: a missing folder or a mismatch fails before any slide is read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cytolt.detect import ModelInfo

__all__ = [
    "COMBINE_METHODS",
    "DEFAULT_TOP_N",
    "MAX_CELL_UM",
    "MERGE_METHODS",
    "InvalidSetting",
    "ScreenSettings",
    "class_map",
    "default_overlap",
]

# Cross-tile merging: class-aware NMS, or weighted box fusion (cytolt.screen.merge).
MERGE_METHODS = ("nms", "wbf")
# How the second stage combines the classifier's probabilities with the detector's (cytolt.screen.second_stage).
COMBINE_METHODS = ("replace", "mean")
# Candidate cells the second stage re-scores per slide. Cheng et al. 2021 (Nat Commun 12, 5639) re-score
# hundreds of candidates per slide; 200 until the screening study measures the choice.
DEFAULT_TOP_N = 200
# The largest cell the grid must hold whole, in microns. Mature squamous cells reach 50-60 um (Bethesda atlas,
# Nayar & Wilbur 2015); the largest cytolt.synth cell measured 62 um (247 px at 0.25 um/px, a 2048 px HSIL
# slide, seed 1). At 0.5 um/px this gives a 128 px overlap.
MAX_CELL_UM = 64.0
# The settings that change detections; the rest only change how fast they come or what else is written.
_IDENTITY_FIELDS = ("tile_size", "overlap", "merge", "read_mpp")


class InvalidSetting(ValueError):
    """A screening setting that cannot be used; ``field`` names it (so a CLI can name its option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def default_overlap(read_mpp: float | None, *, max_cell_um: float = MAX_CELL_UM) -> int:
    """Tile overlap (tile px) that holds a ``max_cell_um`` cell whole, rounded up to a multiple of 16 px.

    Without a read mpp the tiles are level-0 pixels of unknown size: 0.25 um/px (a 40x scan) is assumed.
    """
    px = max_cell_um / (read_mpp if read_mpp else 0.25)
    return int(16 * math.ceil(px / 16))


@dataclass(frozen=True, kw_only=True)
class ScreenSettings:
    """Everything that says how a slide is screened (see the module glossary).

    Attributes:
        tile_size: tile side in pixels at the read mpp (what the detector sees).
        overlap: tile pixels shared by neighbours; None: :func:`default_overlap`, at most half a tile.
        merge: cross-tile merging, one of ``MERGE_METHODS``.
        read_mpp: microns per tile pixel; None: the model's.
        batch_size: tiles per ``detector.predict`` call.
        read_threads: threads reading tiles ahead of the model, per slide (0: read in the calling thread).
        device: torch device for the model (``"cpu"``, ``"cuda:1"``); None: CUDA when available.
        timeout: seconds a slide may take, checked after every batch (a cooperative deadline); None: no limit.
        html: also write each slide's ``report.html``.
        min_squamous_cells: override the model scorer's adequacy minimum of well-visualised squamous cells
            (:class:`~cytolt.adequacy.AdequacyRules`); None keeps the scorer's.
        slide_mpp: microns per level-0 pixel of every slide, for slides whose files lack it or record it
            wrongly; None reads each file's own.
        classifier: a cell classifier's model folder for the second stage (kept as an absolute path); None:
            no second stage.
        classifier_top_n: candidate cells per slide the classifier re-scores.
        classifier_combine: one of ``COMBINE_METHODS``.
        classifier_identity: set from the folder (``"sha256:..."`` over its files), not given.
        classifier_classes: set from the folder: the classifier's class names.

    Raises:
        ValueError: at construction, for any value screening cannot use (:class:`InvalidSetting`), a
            classifier folder that does not read included.
    """

    tile_size: int = 512
    overlap: int | None = None
    merge: str = "nms"
    read_mpp: float | None = None
    batch_size: int = 8
    read_threads: int = 2
    device: str | None = None
    timeout: float | None = None
    html: bool = True
    min_squamous_cells: int | None = None
    slide_mpp: float | None = None
    classifier: str | os.PathLike[str] | None = None
    classifier_top_n: int = DEFAULT_TOP_N
    classifier_combine: str = "replace"
    classifier_identity: str | None = field(default=None, init=False)
    classifier_classes: tuple[str, ...] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.merge not in MERGE_METHODS:
            choices = ", ".join(map(repr, MERGE_METHODS))
            raise InvalidSetting("merge", f"merge must be one of {choices}; got {self.merge!r}")
        for name, low in (("tile_size", 1), ("batch_size", 1), ("read_threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidSetting(name, f"{name} must be an integer >= {low}; got {value!r}")
        if self.overlap is not None and not (
            isinstance(self.overlap, int) and 0 <= self.overlap < self.tile_size
        ):
            raise InvalidSetting(
                "overlap",
                f"overlap must be in [0, {self.tile_size}) for tile_size {self.tile_size}; got {self.overlap}",
            )
        for name in ("read_mpp", "slide_mpp"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            ):
                raise InvalidSetting(name, f"{name} must be positive microns per pixel; got {value!r}")
        if self.min_squamous_cells is not None and not (
            isinstance(self.min_squamous_cells, int) and self.min_squamous_cells >= 0
        ):
            raise InvalidSetting(
                "min_squamous_cells",
                f"min_squamous_cells must be an integer >= 0; got {self.min_squamous_cells!r}",
            )
        if self.timeout is not None and not self.timeout > 0:
            raise InvalidSetting("timeout", f"timeout must be positive seconds or None; got {self.timeout}")
        if self.device is not None:
            import torch

            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise InvalidSetting("device", f"{self.device!r} is not a torch device ({exc})") from None
        top_n = self.classifier_top_n
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise InvalidSetting(
                "classifier_top_n", f"classifier_top_n must be an integer >= 1; got {top_n!r}"
            )
        if self.classifier_combine not in COMBINE_METHODS:
            choices = ", ".join(map(repr, COMBINE_METHODS))
            raise InvalidSetting(
                "classifier_combine",
                f"classifier_combine must be one of {choices}; got {self.classifier_combine!r}",
            )
        if self.classifier is not None:
            if not isinstance(self.classifier, str | os.PathLike):
                raise InvalidSetting(
                    "classifier", f"classifier must be a folder path; got {self.classifier!r}"
                )
            path = str(Path(self.classifier).absolute())
            identity, classes = _read_classifier(path, _stamp(path))
            object.__setattr__(self, "classifier", path)
            object.__setattr__(self, "classifier_identity", identity)
            object.__setattr__(self, "classifier_classes", classes)

    def for_model(self, info: ModelInfo) -> ScreenSettings:
        """These settings with the read mpp (the model's unless given) and the overlap filled in.

        Raises InvalidSetting (field ``classifier``) when the classifier's classes are not the model's.
        """
        if self.classifier_classes is not None:
            try:
                class_map(info.classes, self.classifier_classes, where=f"classifier {self.classifier}")
            except ValueError as exc:
                raise InvalidSetting("classifier", str(exc)) from None
        read_mpp = self.read_mpp if self.read_mpp is not None else info.mpp
        overlap = self.overlap
        if overlap is None:
            overlap = min(default_overlap(read_mpp), self.tile_size // 2)
        return dataclasses.replace(self, read_mpp=read_mpp, overlap=overlap)

    def identity(self) -> dict[str, Any]:
        """The settings that change detections (what ``--resume`` compares), as plain data.

        ``slide_mpp`` and the second stage appear only when given, so runs made before they existed still match.
        """
        out = {name: getattr(self, name) for name in _IDENTITY_FIELDS}
        if self.slide_mpp is not None:
            out["slide_mpp"] = self.slide_mpp
        if self.classifier is not None:
            out["classifier"] = self.classifier_identity
            out["classifier_top_n"] = self.classifier_top_n
            out["classifier_combine"] = self.classifier_combine
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data (what the store records for a run)."""
        return dataclasses.asdict(self)


def class_map(
    detector: Sequence[str], classifier: Sequence[str], *, where: str = "the classifier"
) -> np.ndarray:
    """(C,) int64 index into ``classifier`` of each ``detector`` class name; ValueError naming what differs."""
    detector, classifier = [str(n) for n in detector], [str(n) for n in classifier]
    if len(set(classifier)) != len(classifier):
        raise ValueError(f"{where}: its classes {classifier} repeat a name")
    missing = [n for n in detector if n not in classifier]
    extra = [n for n in classifier if n not in detector]
    if missing or extra:
        parts = ([f"lacks the detector's {missing}"] if missing else []) + (
            [f"has classes the detector lacks {extra}"] if extra else []
        )
        raise ValueError(f"{where}: class table does not match the detector's: it {' and '.join(parts)}")
    return np.array([classifier.index(n) for n in detector], dtype=np.int64)


def _stamp(path: str) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each file in a folder: what tells a re-written folder apart."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        raise InvalidSetting(
            "classifier", f"classifier {path}: not a readable folder ({exc.strerror})"
        ) from None
    return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())


@functools.lru_cache(maxsize=8)
def _read_classifier(path: str, stamp: tuple[tuple[str, int, int], ...]) -> tuple[str, tuple[str, ...]]:
    """A classifier folder's identity and classes, read once per folder state (settings are remade per slide)."""
    from cytolt.classify.folder import ClassifierFolder

    try:
        folder = ClassifierFolder.read(path)
        return folder.identity(), tuple(folder.classes)
    except (OSError, ValueError) as exc:
        raise InvalidSetting("classifier", f"classifier {path}: {exc}") from None
