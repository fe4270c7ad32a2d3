"""A small synthetic run folder for the review tests, with a store of its own per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cytolt.demo_run import make_demo_run
from cytolt.review import RunSlide, open_run
from cytolt.store import RunFolder


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> RunSlide:
    # 2048 x 1536 px HSIL slide (two levels), ~55 detections; about 0.5 s.
    return make_demo_run(tmp_path_factory.mktemp("review") / "run", size=(2048, 1536), label="HSIL", seed=1)


@pytest.fixture
def run(demo: RunSlide, tmp_path: Path) -> RunSlide:
    """The demo run with a store of its own, so reviews stay in one test."""
    (tmp_path / "run").mkdir()
    shutil.copy2(demo.store_path, RunFolder(tmp_path / "run").store_path)
    return open_run(tmp_path / "run")
