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
- *identity*: the settings that change a slide's detections (tile size, overlap, merge, read mpp). Batch size,
  read threads, device, timeout and the HTML page do not, so a slide screened with other values of those is
  still "the same result" for ``--resume``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cytolt.detect import ModelInfo

__all__ = ["MAX_CELL_UM", "MERGE_METHODS", "InvalidSetting", "ScreenSettings", "default_overlap"]

# Cross-tile merging: class-aware NMS, or weighted box fusion (cytolt.screen.merge).
MERGE_METHODS = ("nms", "wbf")
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

    Raises:
        ValueError: at construction, for any value screening cannot use.
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

    def for_model(self, info: ModelInfo) -> ScreenSettings:
        """These settings with the read mpp (the model's unless given) and the overlap filled in."""
        read_mpp = self.read_mpp if self.read_mpp is not None else info.mpp
        overlap = self.overlap
        if overlap is None:
            overlap = min(default_overlap(read_mpp), self.tile_size // 2)
        return dataclasses.replace(self, read_mpp=read_mpp, overlap=overlap)

    def identity(self) -> dict[str, Any]:
        """The settings that change detections (what ``--resume`` compares), as plain data.

        ``slide_mpp`` appears only when given, so runs made before it existed still match.
        """
        out = {name: getattr(self, name) for name in _IDENTITY_FIELDS}
        if self.slide_mpp is not None:
            out["slide_mpp"] = self.slide_mpp
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data (what the store records for a run)."""
        return dataclasses.asdict(self)
