"""A small synthetic slide screened once by the oracle detector, shared by the report tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cytolt.adequacy import AdequacyRules
from cytolt.screen.engine import SlideResult, default_scorer, screen_slide
from cytolt.screen.settings import ScreenSettings
from cytolt.synth import make_slide

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _screen_oracle import OracleDetector  # noqa: E402


@pytest.fixture(scope="session")
def report_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Nested folders stand for a case folder whose name must never reach a report.
    path = tmp_path_factory.mktemp("reports") / "case-Jane-Doe" / "slide7.tiff"
    make_slide(path, size=(1024, 1024), mpp=0.25, seed=3, label="HSIL")
    return path


def _screen(path: Path, *, scored: bool) -> SlideResult:
    oracle = OracleDetector(path, tile_size=256, overlap=128, mpp=0.5, check_pixels=False)
    try:
        # the 1024-px slide holds tens of squamous cells: an adequacy minimum calibrated for it
        adequacy = AdequacyRules(min_squamous_cells=10)
        scorer = default_scorer(oracle.info, k=4, adequacy=adequacy) if scored else None
        return screen_slide(
            path, oracle, ScreenSettings(tile_size=256, overlap=128, read_threads=1), scorer=scorer
        )
    finally:
        oracle.close()


@pytest.fixture(scope="session")
def scored_result(report_slide: Path) -> SlideResult:
    return _screen(report_slide, scored=True)


@pytest.fixture(scope="session")
def unscored_result(report_slide: Path) -> SlideResult:
    return _screen(report_slide, scored=False)
