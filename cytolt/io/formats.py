"""The one table of slide file names cytolt knows: what a folder of scans or the napari reader picks up.

``SLIDE_SUFFIXES`` are matched against the lower-case file name (``name.lower().endswith(SLIDE_SUFFIXES)``):
OpenSlide's formats (openslide.org/formats: Aperio, Hamamatsu, Leica, MIRAX, Philips, Sakura, Trestle, Ventana,
generic tiled TIFF), OME-TIFF (``.ome.tif`` / ``.ome.tiff`` end in ``.tif`` / ``.tiff``), DICOM levels, and the
vendor formats no backend reads (``UNSUPPORTED_FORMATS``), so a folder's KFB/SDPC/TMAP files are reported as
unsupported with the reason instead of silently left out.
"""

from __future__ import annotations

from pathlib import Path

from cytolt.io.errors import UNSUPPORTED_FORMATS

__all__ = ["FOLDER_SUFFIXES", "SLIDE_SUFFIXES", "is_slide_name"]

SLIDE_SUFFIXES: tuple[str, ...] = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
    *UNSUPPORTED_FORMATS,
)
# What a folder of scans is expanded to: every slide suffix but DICOM, since a DICOM slide is a folder of .dcm
# files, one per level, and each would be screened as its own slide; name one of them explicitly.
FOLDER_SUFFIXES: tuple[str, ...] = tuple(s for s in SLIDE_SUFFIXES if s != ".dcm")


def is_slide_name(name: str | Path, *, suffixes: tuple[str, ...] = SLIDE_SUFFIXES) -> bool:
    """Whether a file name ends in one of ``suffixes`` (case-insensitive) and is not hidden (``.name``)."""
    text = Path(name).name
    return not text.startswith(".") and text.lower().endswith(suffixes)
