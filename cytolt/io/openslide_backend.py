"""OpenSlide backend (openslide-python with the openslide-bin library): Aperio SVS, Hamamatsu NDPI/VMS,
Leica SCN, MIRAX, Philips TIFF, Ventana, DICOM and generic tiled TIFF with levels as pages.

OpenSlide returns straight-alpha RGBA; transparent pixels (outside the scanned area or the slide) are
composited on white so regions match the tifffile backend. One handle per worker: handles are thread-safe
but serialise on internal locks, so the tile stream opens one per worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide

from cytolt.io.errors import SlideError
from cytolt.io.slide import MppArg, Slide, rgba_on_white


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OpenSlideSlide(Slide):
    """A slide read through OpenSlide. ``vendor`` is OpenSlide's format name ('aperio', 'dicom', ...)."""

    backend = "openslide"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """Whether OpenSlide recognises the file's format (``OpenSlide.detect_format``: a vendor name or None)."""
        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except Exception:  # OpenSlideError, OSError: not a file OpenSlide reads
            return False

    def __init__(self, path: str | Path, *, mpp: MppArg = None) -> None:
        super().__init__(path, mpp=mpp)
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(self.path, "not a slide format OpenSlide recognises") from exc
        except FileNotFoundError as exc:
            raise SlideError(self.path, "file not found") from exc
        except Exception as exc:  # OpenSlideError, OSError: no backend exception type leaks
            raise SlideError(self.path, f"OpenSlide cannot open it ({_reason(exc)})") from exc
        try:
            self._level_dimensions = tuple((int(w), int(h)) for w, h in self._osr.level_dimensions)
            self._level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
            props = dict(self._osr.properties)
            self._associated = tuple(self._osr.associated_images.keys())
        except Exception as exc:
            self._osr.close()
            raise SlideError(self.path, f"OpenSlide cannot read its metadata ({_reason(exc)})") from exc
        self._properties = {"vendor": props.get(openslide.PROPERTY_NAME_VENDOR, "unknown"), **props}
        try:
            self._native_mpp = (
                float(props[openslide.PROPERTY_NAME_MPP_X]),
                float(props[openslide.PROPERTY_NAME_MPP_Y]),
            )
        except (KeyError, ValueError):
            self._native_mpp = None

    @property
    def properties(self) -> Mapping[str, str]:
        return self._properties

    @property
    def associated_images(self) -> tuple[str, ...]:
        return self._associated

    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        try:
            image = self._osr.read_region((x, y), level, (w, h))
        except Exception as exc:  # OpenSlideError (corrupt tile, short read), ctypes errors
            raise SlideError(
                self.path, f"cannot read {w}x{h} at ({x}, {y}) level {level} ({_reason(exc)})"
            ) from exc
        return rgba_on_white(np.asarray(image))

    def _read_associated(self, name: str) -> np.ndarray:
        try:
            image = self._osr.associated_images[name]
        except Exception as exc:
            raise SlideError(self.path, f"cannot read associated image {name!r} ({_reason(exc)})") from exc
        return rgba_on_white(np.asarray(image.convert("RGBA")))

    def _close(self) -> None:
        self._osr.close()
