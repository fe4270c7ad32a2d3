"""How often screening opens a slide file: once for the tissue mask (grid, metadata) and once per read thread.

Every backend's ``Slide.__init__`` is one open of the file (OpenSlide's handle or tifffile's parse); the
backend probe of ``open_slide("auto")`` is the backend's ``can_read`` and is counted apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cytolt.io.slide import Slide
from cytolt.screen import LocalExecutor, ScreenSettings, screen_slide, screen_slides
from cytolt.synth import make_slide

sys.path.insert(0, str(Path(__file__).parent))
from _screen_oracle import OracleDetector  # noqa: E402
from _tile_oracle import write_model_dir  # noqa: E402


@pytest.fixture(scope="module", params=["tiff", "aperio"])
def slide(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    suffix = {"tiff": ".tiff", "aperio": ".svs"}[request.param]
    path = tmp_path_factory.mktemp("opens") / f"hsil{suffix}"
    make_slide(path, size=(1024, 1024), mpp=0.25, seed=1, label="HSIL", format=request.param)
    return path


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of every Slide constructed from now on, in order."""
    seen: list[Path] = []
    original = Slide.__init__

    def counting(self: Slide, path, *args, **kwargs) -> None:  # noqa: ANN001
        seen.append(Path(path))
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(Slide, "__init__", counting)
    return seen


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_screen_slide_opens_the_slide_once_plus_once_per_read_thread(
    slide: Path, opens: list[Path], threads: int
) -> None:
    opens.clear()
    oracle = OracleDetector(slide, tile_size=256, overlap=128, mpp=0.5, check_pixels=False)
    opens.clear()  # the oracle's own handle is not screening's
    result = screen_slide(slide, oracle, ScreenSettings(tile_size=256, overlap=128, read_threads=threads))
    oracle.close()
    assert result.ok and result.tiles_read > 2 * threads
    assert opens == [slide] * (1 + threads)


def test_a_run_adds_one_open_for_the_report_page(slide: Path, opens: list[Path], tmp_path: Path) -> None:
    oracle = OracleDetector(slide, tile_size=256, overlap=128, mpp=0.5, check_pixels=False)
    model = write_model_dir(tmp_path / "model")
    opens.clear()
    summary = screen_slides(
        [slide],
        model,
        tmp_path / "run",
        ScreenSettings(tile_size=256, overlap=128, read_threads=2),
        executor=LocalExecutor(factory=lambda device: oracle),
    )
    oracle.close()
    assert summary.ok and (summary.report_dirs[0] / "report.html").is_file()
    assert opens == [slide] * (1 + 2 + 1)  # mask, two read threads, the HTML page's thumbnail and gallery
