"""The one exception every slide failure is reported as.

Backends (OpenSlide, tifffile, imagecodecs, zarr) each raise their own exception types; callers of
``cytolt.io`` see only :class:`SlideError`, whose message names the file and the cause, with the backend's
exception chained as ``__cause__`` for debugging.
"""

from __future__ import annotations

import os
from pathlib import Path

# Vendor formats common in Chinese TCT labs that neither OpenSlide nor tifffile reads (DOMAIN.md, "Slide
# files"): extension -> (format name, what is needed to read it).
UNSUPPORTED_FORMATS: dict[str, tuple[str, str]] = {
    ".kfb": ("KFBio KFB", "the KFBio SDK (KFBReader)"),
    ".sdpc": ("Shengqiang SDPC", "the Shengqiang SDK (sdpc library)"),
    ".tmap": ("UNIC TMAP", "the UNIC TMAP SDK"),
}
# KFB files carry one of these 4-byte tags at offset 4 (as read by public KFB readers), so a renamed
# file is still recognised.
_KFB_TAGS = (b"KFB\x00", b"KFBL", b"KFBF")


class SlideError(Exception):
    """Any failure to open or read a slide: missing file, unsupported format, corrupt or truncated data,
    a region outside the slide.

    Attributes:
        path: the slide file, as given.
        cause: a short sentence saying what went wrong.
    """

    def __init__(self, path: str | os.PathLike[str], cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")

    def __reduce__(self) -> tuple[type[SlideError], tuple[str, str]]:
        # Default pickling would call __init__(message) and fail; process workers send SlideErrors back.
        return (type(self), (self.path, self.cause))


def unsupported_format(path: Path) -> tuple[str, str] | None:
    """(format name, library needed) when ``path`` is a vendor format no backend reads, else None.

    Detected by extension, and for KFB also by the tag at byte 4 of the file.
    """
    known = UNSUPPORTED_FORMATS.get(path.suffix.lower())
    if known is not None:
        return known
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head[4:8] in _KFB_TAGS:
        return UNSUPPORTED_FORMATS[".kfb"]
    return None
