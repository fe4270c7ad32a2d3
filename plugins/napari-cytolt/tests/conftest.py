"""Fixtures of the napari-cytolt tests: a small synthetic run folder, copied fresh for each test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# opencv-python (a dependency of mmcv, installed beside opencv-python-headless) points Qt at its own xcb plugin
# when cv2 is imported (cv2/config-3.py sets QT_QPA_PLATFORM_PLUGIN_PATH); that plugin does not load next to
# PyQt5's Qt and QApplication aborts the process. Import cv2 now, then let Qt use PyQt5's plugins.
import cv2  # noqa: E402, F401, I001
import pytest

from cytolt.demo_run import make_demo_run
from cytolt.review import RunSlide, open_run
from cytolt.store import RunFolder

if "cv2" in Path(os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")).parts:
    del os.environ["QT_QPA_PLATFORM_PLUGIN_PATH"]
    os.environ.pop("QT_QPA_FONTDIR", None)

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def _demo_run_master(tmp_path_factory: pytest.TempPathFactory) -> RunSlide:
    # 2048 x 1536 px at 0.25 um/px, HSIL: about 55 cells, 26 of them HSIL (seed 1); written in about 0.5 s.
    return make_demo_run(tmp_path_factory.mktemp("demo") / "run", size=(2048, 1536), label="HSIL", seed=1)


@pytest.fixture
def demo_run(_demo_run_master: RunSlide, tmp_path: Path) -> RunSlide:
    """A run folder of its own (reviews written by one test never reach another); the slide is shared."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy2(_demo_run_master.store_path, RunFolder(run_dir).store_path)
    return open_run(run_dir)


@pytest.fixture(scope="session")
def openslide_fixtures() -> Path:
    """Small real slides from the openslide-python test-suite (read-only), as in tests/conftest.py."""
    path = Path(os.environ.get("CYTOLT_FIXTURES", FIXTURES)) / "openslide"
    if not path.is_dir():
        raise FileNotFoundError(f"slide fixtures not found at {path}; set CYTOLT_FIXTURES")
    return path
