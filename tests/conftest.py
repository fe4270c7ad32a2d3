"""Shared pytest setup: markers that skip honestly when the hardware or display is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    has_display = bool(os.environ.get("DISPLAY")) or shutil.which("Xvfb") is not None
    no_x = pytest.mark.skip(reason="needs an X server: install xvfb (see `cytolt doctor`)")
    for item in items:
        if "gpu" in item.keywords and not _cuda_available():
            item.add_marker(no_gpu)
        if "napari" in item.keywords and not has_display:
            item.add_marker(no_x)


@pytest.fixture(scope="session")
def openslide_fixtures() -> Path:
    """Folder of small real slides from the openslide-python test-suite (read-only)."""
    path = Path(os.environ.get("CYTOLT_FIXTURES", FIXTURES)) / "openslide"
    if not path.is_dir():
        raise FileNotFoundError(f"slide fixtures not found at {path}; set CYTOLT_FIXTURES")
    return path
