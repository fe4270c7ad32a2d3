"""The ``open_slide`` factory: the table of slide backends and the rule ``backend="auto"`` follows.

``slide.py`` holds the interface (``Slide``, ``SlideSpec``) and imports no backend; each backend file
implements it and says which files it reads (``Slide.can_read``); this module is the only one that knows
them all.
"""

from __future__ import annotations

from pathlib import Path

from cytolt.io.errors import SlideError, unsupported_format
from cytolt.io.openslide_backend import OpenSlideSlide
from cytolt.io.slide import MppArg, Slide, SlideSpec, parse_mpp
from cytolt.io.tiff_backend import TiffSlide

__all__ = ["AUTO_ORDER", "BACKENDS", "BACKEND_CHOICES", "choose_backend", "open_slide", "open_spec"]

# backend name -> class; the names are what ``open_slide(backend=...)`` and ``SlideSpec.backend`` hold.
BACKENDS: dict[str, type[Slide]] = {cls.backend: cls for cls in (OpenSlideSlide, TiffSlide)}
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
# "auto" asks the backends in this order. tifffile+zarr comes first for the plain TIFF pyramids it decodes: it
# sees SubIFD/OME pyramids (OpenSlide does not) and decodes tiles faster. OpenSlide, last, takes vendor
# flavours (SVS, NDPI, SCN, Philips, Ventana BIF), DICOM and every file no backend claims, so that its error
# says why such a file cannot be read.
AUTO_ORDER: tuple[type[Slide], ...] = (TiffSlide, OpenSlideSlide)


def choose_backend(path: Path) -> str:
    """The backend "auto" picks for ``path``: the first of ``AUTO_ORDER`` whose ``can_read`` says yes, else
    the last one. Raises SlideError when the file cannot be read at all."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SlideError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    for cls in AUTO_ORDER:
        if cls.can_read(path):
            return cls.backend
    return AUTO_ORDER[-1].backend


def open_slide(path: str | Path, backend: str = "auto", *, mpp: MppArg = None) -> Slide:
    """Open a whole-slide image.

    Args:
        path: the slide file.
        backend: 'auto' (see ``choose_backend``), 'openslide' or 'tifffile'.
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
    if backend == "auto":
        backend = choose_backend(path)
    return BACKENDS[backend](path, mpp=mpp)


def open_spec(spec: SlideSpec) -> Slide:
    """Open the slide a ``SlideSpec`` describes again (same file, backend and mpp override): what each tile
    worker does with the picklable spec of a slide opened elsewhere."""
    return open_slide(spec.path, backend=spec.backend, mpp=spec.mpp)
