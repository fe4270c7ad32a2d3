"""The ``Slide`` interface every backend implements (``open_slide`` in ``backends.py`` picks and opens one).

Glossary
    level-0 pixels   (x, y) in the full-resolution image, origin top-left. Every location in cytolt is one.
    level            a pyramid level; ``level_downsamples[k]`` level-0 pixels per level-k pixel.
    mpp              microns per level-0 pixel, as an (x, y) pair.
    region           an (h, w, 3) uint8 RGB numpy array; pixels outside the slide are white (255).

Backends live one per file (``openslide_backend.py``, ``tiff_backend.py``) and implement ``can_read`` and
four small methods; bounds checks, mpp resampling and thumbnails are shared here so every backend behaves the
same. This module imports no backend.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import cv2
import numpy as np

from cytolt.io.errors import SlideError

# A single read larger than this (805 MB of RGB) is a caller bug: large areas are read tile by tile.
MAX_REGION_PIXELS = 1 << 28
# A level whose downsample is within 1% above the one asked for still counts as "finer": pyramids whose
# sizes are not divisible by 2 get downsamples like 4.016 (OpenSlide averages w and h ratios), and reading
# the next finer level instead would decode 4x the pixels to gain a 0.4% scale error.
LEVEL_TOLERANCE = 0.01
# Thumbnails read the chosen level in chunks of at most this many level pixels per side, so a slide
# without a pyramid still makes a thumbnail in bounded memory.
_THUMBNAIL_CHUNK = 4096

MppArg = float | tuple[float, float] | None


def parse_mpp(value: MppArg) -> tuple[float, float] | None:
    """``None``, a number, or an (x, y) pair -> (x, y) microns per pixel, both positive and finite."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int | float) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"mpp must be a number or an (x, y) pair of microns per pixel; got {value!r}")
    out = (float(pair[0]), float(pair[1]))
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"mpp must be positive and finite; got {value!r}")
    return out


@dataclass(frozen=True)
class SlideSpec:
    """What it takes to open a slide again: picklable, so tile workers open their own handles
    (``cytolt.io.open_spec``). ``backend`` is a name in ``cytolt.io.BACKENDS``, never 'auto'."""

    path: str
    backend: str
    mpp: tuple[float, float] | None = None


class Slide(abc.ABC):
    """A whole-slide image: a pyramid of RGB levels addressed in level-0 pixels.

    Subclasses fill ``_level_dimensions``, ``_level_downsamples`` and ``_native_mpp`` in ``__init__`` and
    implement ``can_read``, ``_read_region``, ``associated_images``, ``_read_associated`` and ``_close``.
    """

    backend: ClassVar[str] = ""

    @classmethod
    @abc.abstractmethod
    def can_read(cls, path: Path) -> bool:
        """Whether ``backend="auto"`` should open ``path`` with this backend: a cheap probe of the file that
        never raises (an unreadable or foreign file is False)."""

    def __init__(self, path: str | Path, *, mpp: MppArg = None) -> None:
        self.path = Path(path)
        self._mpp_arg = parse_mpp(mpp)
        self._native_mpp: tuple[float, float] | None = None
        self._level_dimensions: tuple[tuple[int, int], ...] = ()
        self._level_downsamples: tuple[float, ...] = ()
        self._closed = False

    # ----------------------------------------------------------------- geometry
    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0 in pixels."""
        return self._level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self._level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level, finest first."""
        return self._level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per level-k pixel: the mean of the width and height ratios, as OpenSlide computes."""
        return self._level_downsamples

    @property
    def mpp(self) -> tuple[float, float] | None:
        """(x, y) microns per level-0 pixel: the ``mpp=`` given at open, else the file's, else None."""
        return self._mpp_arg if self._mpp_arg is not None else self._native_mpp

    @property
    def spec(self) -> SlideSpec:
        return SlideSpec(str(self.path), self.backend, self._mpp_arg)

    @property
    def vendor(self) -> str:
        """Short format name, e.g. 'aperio', 'generic-tiff', 'ome-tiff', 'dicom'."""
        return self.properties.get("vendor", "unknown")

    @property
    @abc.abstractmethod
    def properties(self) -> Mapping[str, str]:
        """A few metadata strings; always has 'vendor'. Never copied into reports (may hold patient data)."""

    @property
    @abc.abstractmethod
    def associated_images(self) -> tuple[str, ...]:
        """Names of the associated images (e.g. 'thumbnail', 'label', 'macro'); read with read_associated."""

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (within 1%); 0 if none is."""
        best = 0
        for k, ds in enumerate(self._level_downsamples):
            if ds <= downsample * (1 + LEVEL_TOLERANCE):
                best = k
        return best

    # ----------------------------------------------------------------- reading
    def read_region(self, location: Sequence[int], level: int, size: Sequence[int]) -> np.ndarray:
        """Read ``size`` = (w, h) pixels of ``level`` whose top-left corner is level-0 ``location`` = (x, y).

        Returns (h, w, 3) uint8 RGB. The level-k pixel read first is floor(x / downsample); OpenSlide blends
        neighbours for a fractional position, so backends agree exactly where x and y are multiples of the
        downsample. Parts outside the slide are white; a region entirely outside, or with a non-positive
        size, raises SlideError.
        """
        x, y = int(location[0]), int(location[1])
        w, h = int(size[0]), int(size[1])
        self._check_open()
        level = self._check_level(level)
        if w <= 0 or h <= 0:
            raise SlideError(self.path, f"region size must be positive; got {w}x{h}")
        if w * h > MAX_REGION_PIXELS:
            raise SlideError(
                self.path,
                f"region {w}x{h} is larger than {MAX_REGION_PIXELS} pixels; read it in tiles (TileGrid)",
            )
        ds = self._level_downsamples[level]
        lw, lh = self._level_dimensions[level]
        xl, yl = math.floor(x / ds), math.floor(y / ds)
        if xl >= lw or yl >= lh or xl + w <= 0 or yl + h <= 0:
            width, height = self.dimensions
            raise SlideError(
                self.path,
                f"region at ({x}, {y}) of {w}x{h} level-{level} pixels lies entirely outside the slide "
                f"({width}x{height} level-0 pixels)",
            )
        return self._read_region(x, y, level, w, h)

    def read_at_mpp(
        self, location: Sequence[int], mpp: float | tuple[float, float], size: Sequence[int]
    ) -> np.ndarray:
        """Read (w, h) = ``size`` pixels of ``mpp`` microns each, top-left at level-0 ``location``.

        Reads the nearest finer level (see ``best_level_for_downsample``) and resamples it: cv2.INTER_AREA
        when shrinking, bilinear when the request is finer than level 0. Returns (h, w, 3) uint8.
        """
        target = parse_mpp(mpp)
        if target is None:
            raise ValueError("mpp must be given")
        fx, fy = self._scale_to(target)
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise SlideError(self.path, f"region size must be positive; got {w}x{h}")
        level = self.best_level_for_downsample(min(fx, fy))
        ds = self._level_downsamples[level]
        rw, rh = max(1, round(w * fx / ds)), max(1, round(h * fy / ds))
        return _resize(self.read_region(location, level, (rw, rh)), (w, h))

    def level0_size_at_mpp(self, mpp: float | tuple[float, float], size: Sequence[int]) -> tuple[int, int]:
        """Level-0 (w, h) footprint of ``size`` pixels at ``mpp``: what ``read_at_mpp`` covers."""
        target = parse_mpp(mpp)
        if target is None:
            raise ValueError("mpp must be given")
        fx, fy = self._scale_to(target)
        return max(1, round(int(size[0]) * fx)), max(1, round(int(size[1]) * fy))

    def thumbnail(self, max_size: int | tuple[int, int]) -> np.ndarray:
        """The whole slide shrunk to fit in ``max_size`` (an int or (w, h)), aspect kept, never enlarged.

        Returns (h, w, 3) uint8, read from the nearest finer level in bounded memory.
        """
        mw, mh = (max_size, max_size) if isinstance(max_size, int) else (int(max_size[0]), int(max_size[1]))
        if mw <= 0 or mh <= 0:
            raise ValueError(f"max_size must be positive; got {max_size!r}")
        self._check_open()
        width, height = self.dimensions
        scale = max(width / mw, height / mh, 1.0)
        return self._read_scaled((max(1, round(width / scale)), max(1, round(height / scale))))

    def read_associated(self, name: str) -> np.ndarray:
        """An associated image by name (see ``associated_images``) as (h, w, 3) uint8 RGB."""
        self._check_open()
        if name not in self.associated_images:
            raise SlideError(
                self.path, f"no associated image {name!r}; this slide has {list(self.associated_images)}"
            )
        return self._read_associated(name)

    # ----------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release the file; further reads raise SlideError. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, dimensions={self.dimensions}, "
            f"levels={self.level_count}, mpp={self.mpp})"
        )

    # ----------------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        """(h, w, 3) uint8 at level ``level`` from level-0 (x, y); the region overlaps the slide; pad white."""

    @abc.abstractmethod
    def _read_associated(self, name: str) -> np.ndarray: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise SlideError(self.path, "slide is closed")

    def _check_level(self, level: int) -> int:
        level = int(level)
        if not 0 <= level < self.level_count:
            raise SlideError(
                self.path, f"level {level} does not exist; this slide has levels 0-{self.level_count - 1}"
            )
        return level

    def _scale_to(self, target: tuple[float, float]) -> tuple[float, float]:
        """Level-0 pixels per pixel at the ``target`` mpp, (x, y)."""
        base = self.mpp
        if base is None:
            raise SlideError(
                self.path,
                "the file records no microns per pixel; give it with --mpp (cytolt screen, cytolt dataset) or mpp= (open_slide)",
            )
        return target[0] / base[0], target[1] / base[1]

    def _read_scaled(self, out_size: tuple[int, int]) -> np.ndarray:
        """The whole slide resampled to ``out_size`` = (w, h), read in chunks of bounded size."""
        ow, oh = out_size
        width, height = self.dimensions
        sx, sy = width / ow, height / oh
        level = self.best_level_for_downsample(min(sx, sy))
        ds = self._level_downsamples[level]
        lw, lh = self._level_dimensions[level]
        if lw * lh <= _THUMBNAIL_CHUNK * _THUMBNAIL_CHUNK:
            return _resize(self.read_region((0, 0), level, (lw, lh)), (ow, oh))
        # Output pixels per chunk, so that each chunk reads at most _THUMBNAIL_CHUNK level pixels a side.
        step_x = max(1, int(_THUMBNAIL_CHUNK * ds / sx))
        step_y = max(1, int(_THUMBNAIL_CHUNK * ds / sy))
        out = np.empty((oh, ow, 3), np.uint8)
        for oy in range(0, oh, step_y):
            oy1 = min(oh, oy + step_y)
            for ox in range(0, ow, step_x):
                ox1 = min(ow, ox + step_x)
                x0, y0 = round(ox * sx), round(oy * sy)
                rw = max(1, math.ceil((ox1 - ox) * sx / ds))
                rh = max(1, math.ceil((oy1 - oy) * sy / ds))
                chunk = self.read_region((x0, y0), level, (rw, rh))
                out[oy:oy1, ox:ox1] = _resize(chunk, (ox1 - ox, oy1 - oy))
        return out


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (h, w, 3) to (w, h) = ``size``: INTER_AREA to shrink (no aliasing), bilinear to enlarge."""
    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    shrink = image.shape[1] >= w and image.shape[0] >= h
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) straight-alpha RGBA -> (h, w, 3) RGB composited on white, as OpenSlide regions are."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    # rgb * a / 255 + 255 * (1 - a / 255), rounded: exact for a in {0, 255}
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)
