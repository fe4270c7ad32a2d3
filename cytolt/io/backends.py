"""The ``open_slide`` factory: the table of slide backends and the rule ``backend="auto"`` follows.

``slide.py`` holds the interface (``Slide``, ``SlideSpec``) and imports no backend; each backend file
implements it and says which files it reads (``Slide.can_read``); this module is the only one that knows
them all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytolt.io.errors import SlideError, unsupported_format
from cytolt.io.openslide_backend import OpenSlideSlide
from cytolt.io.slide import MppArg, Slide, SlideSpec, parse_mpp
from cytolt.io.tiff_backend import TiffSlide

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BACKEND_CHOICES",
    "BackendChoice",
    "choose_backend",
    "explain_backend",
    "open_slide",
    "open_spec",
]

# backend name -> class; the names are what ``open_slide(backend=...)`` and ``SlideSpec.backend`` hold.
BACKENDS: dict[str, type[Slide]] = {cls.backend: cls for cls in (OpenSlideSlide, TiffSlide)}
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
# "auto" asks the backends in this order: the fastest first. tifffile+zarr decodes tiles straight from their
# byte offsets (bench/bench_read.py: several times OpenSlide's tiles/s) and sees SubIFD/OME pyramids, which
# OpenSlide does not. OpenSlide, last, takes the vendor flavours tifffile does not lay out as OpenSlide does
# (NDPI, SCN, Philips, Ventana BIF, SVS with missing tiles or YCbCr JPEG 2000), DICOM and every file no
# backend claims, so that its error says why such a file cannot be read.
AUTO_ORDER: tuple[type[Slide], ...] = (TiffSlide, OpenSlideSlide)


_CHOSEN: dict[tuple[str, int, int], str] = {}  # choose_backend's memory, oldest first
_CHOSEN_LOCK = threading.Lock()
_CHOSEN_MAX = 256


@dataclass(frozen=True)
class BackendChoice:
    """What ``backend="auto"`` picks for a file and why (``cytolt doctor SLIDE`` prints both)."""

    backend: str
    reason: str


def explain_backend(path: Path) -> BackendChoice:
    """The backend "auto" picks for ``path``, and why: tifffile (the first of ``AUTO_ORDER``) where its
    ``can_read`` says yes, else OpenSlide. A file OpenSlide reads too goes to tifffile only where both decode
    the same pixels (``decoders_differ``), so the choice changes speed, never pixels. Raises SlideError when the
    file cannot be read at all."""
    path = Path(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SlideError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    refusal = TiffSlide.refusal(path)
    if refusal is not None:
        return BackendChoice(OpenSlideSlide.backend, f"tifffile not used: {refusal}")
    if not OpenSlideSlide.can_read(path):
        return BackendChoice(TiffSlide.backend, "a TIFF layout only tifffile reads")
    difference = decoders_differ(path)
    if difference is not None:
        return BackendChoice(
            OpenSlideSlide.backend, f"tifffile not used: it differs from OpenSlide, {difference}"
        )
    return BackendChoice(TiffSlide.backend, "the fastest reader, and it decodes the same pixels as OpenSlide")


def choose_backend(path: Path) -> str:
    """The name of the backend "auto" picks for ``path`` (see ``explain_backend``), remembered per file
    version (path, size, modification time): the pipeline opens a slide several times and each probe costs
    one OpenSlide open and a tile decode per level (10-70 ms)."""
    try:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return explain_backend(path).backend  # raises the SlideError that names the problem
    with _CHOSEN_LOCK:
        known = _CHOSEN.get(key)
    if known is not None:
        return known
    backend = explain_backend(path).backend
    with _CHOSEN_LOCK:  # slides are opened from several threads (read threads, executors)
        if len(_CHOSEN) >= _CHOSEN_MAX:
            _CHOSEN.pop(next(iter(_CHOSEN)))
        _CHOSEN[key] = backend
    return backend


def decoders_differ(path: Path) -> str | None:
    """Where tifffile and OpenSlide read ``path`` differently, or None where they agree.

    Compares one tile per level both see (``TiffSlide.probe_regions``: the one with the most compressed bytes)
    pixel for pixel, and the level geometry. The layouts that differ by construction (missing tiles, unknown
    compressions) are refused before this by ``TiffSlide.can_read``; this catches decoders that disagree (a
    JPEG colour space read two ways, another IDCT). A probe either reader cannot decode counts as a difference,
    so such a file keeps OpenSlide and its error messages."""
    try:
        with TiffSlide(path) as tiff, OpenSlideSlide(path) as osl:
            if tiff.level_dimensions[0] != osl.level_dimensions[0]:
                return f"level 0 is {tiff.level_dimensions[0]} in tifffile, {osl.level_dimensions[0]} in OpenSlide"
            for level, location, size in tiff.probe_regions():
                if tiff.level_dimensions[level] not in osl.level_dimensions:
                    continue  # a level only tifffile sees (SubIFD pyramids)
                other = osl.level_dimensions.index(tiff.level_dimensions[level])
                a = tiff.read_region(location, level, size)
                b = osl.read_region(location, other, size)
                worst = int(np.abs(a.astype(np.int16) - b).max())
                if worst:
                    return f"level {level} tile at {location} differs by up to {worst} grey levels"
    except SlideError as exc:
        return f"probe tile unreadable ({exc})"
    return None


def open_slide(path: str | Path, backend: str = "auto", *, mpp: MppArg = None) -> Slide:
    """Open a whole-slide image.

    Args:
        path: the slide file.
        backend: 'auto' (the fastest reader that decodes the file as OpenSlide does; see ``explain_backend``),
            'openslide' or 'tifffile'. ``Slide.backend`` says which one opened it.
        mpp: microns per level-0 pixel, a number or (x, y); overrides the file's value or supplies a
            missing one.

    Raises:
        ValueError: an unknown backend name or a bad mpp.
        SlideError: the file is missing, unsupported (KFB, SDPC, TMAP, ...), truncated or corrupt.
    """
    if backend not in BACKEND_CHOICES:
        choices = ", ".join(repr(c) for c in BACKEND_CHOICES)
        raise ValueError(f"backend must be one of {choices}; got {backend!r}")
    parse_mpp(mpp)  # a bad mpp is a ValueError before any file access
    path = Path(path)
    if not path.exists():
        raise SlideError(path, "file not found")
    if path.is_dir():
        raise SlideError(path, "is a directory, not a slide file")
    vendor = unsupported_format(path)
    if vendor is not None:
        name, needs = vendor
        raise SlideError(
            path, f"{name} slides are not supported: reading them needs {needs}; convert to OME-TIFF or SVS"
        )
    if backend != "auto":
        return BACKENDS[backend](path, mpp=mpp)
    backend = choose_backend(path)
    try:
        return BACKENDS[backend](path, mpp=mpp)
    except SlideError as exc:
        if backend != "openslide":
            raise
        # Neither reader opens it: tifffile's reason ("file is truncated: ...") names the damage, OpenSlide's
        # ("Cannot hash TIFF tiles: Short read ...") rarely does, so the user reads tifffile's first.
        try:
            TiffSlide(path).close()
        except SlideError as tiff_exc:
            raise SlideError(
                path, f"{tiff_exc.cause}; OpenSlide cannot open it either ({exc.cause})"
            ) from exc
        raise


def open_spec(spec: SlideSpec) -> Slide:
    """Open the slide a ``SlideSpec`` describes again (same file, backend and mpp override): what each tile
    worker does with the picklable spec of a slide opened elsewhere."""
    return open_slide(spec.path, backend=spec.backend, mpp=spec.mpp)
