"""Compatibility fixes the pinned stack needs, each applied once and logged.

Kept outside ``cytolt.mm`` because evaluation (``cytolt.evaluate``) also runs lvis-api without mmdet.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("cytolt")
_applied: set[str] = set()


def patch_numpy_for_lvis() -> None:
    """Restore ``np.float`` for lvis-api 0.5.3 (2020), which still uses the alias removed in numpy 1.24."""
    if "np.float" in _applied:
        return
    _applied.add("np.float")
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]
        log.info("cytolt: set np.float = float for lvis-api 0.5.3 (alias removed from numpy)")
