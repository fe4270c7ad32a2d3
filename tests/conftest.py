"""Shared pytest setup: markers that skip honestly when the hardware or display is absent; and two stand-ins inside
mmengine that only make the suite faster (``pytest_runtest_setup``): config text left unformatted
(``_unformatted_config_text``) and a young-generation collection where a dataset asks for a full one
(``_YoungGenerationGC``)."""

from __future__ import annotations

import ast
import gc
import os
import shutil
import sys
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


def _unformatted_config_text(text: str, style_config: object = None, **_: object) -> tuple[str, bool]:
    """Stands in for yapf's ``FormatCode`` in mmengine's ``Config.pretty_text``: the text as mmengine writes it
    before formatting (the same Python, one key per line, no spaces around a top-level ``=``).

    Why: every Runner formats its whole config with yapf four to six times (the logged config, the dumped file,
    the visualizer, ``before_run`` of each loop, every checkpoint's meta), 0.3-0.9 s of CPU each; that was about
    a third of a one-step config training. What yapf checked stays checked: text that is not Python raises here,
    and mmengine turns that into the same SyntaxError. tests/configs/test_mmengine_stand_ins.py shows both texts
    load to the same config.
    """
    ast.parse(text)
    return text, False


class _YoungGenerationGC:
    """Stands in for the ``gc`` module in mmengine.dataset.base_dataset, whose every dataset runs a full
    ``gc.collect()`` when it is built (``BaseDataset._serialize_data``, to free its list before loader workers
    fork). A full collection scans every object the imports of torch, mmdet and the test modules made: 0.3 s of CPU
    each, two or three per Runner. No result changes: the young generation, where the freed list's objects are,
    is still collected, and the rest at the next automatic full collection."""

    @staticmethod
    def collect(generation: int = 2) -> int:
        return gc.collect(0)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # mmengine is imported by the test modules that use it (at collection) or inside a test; patch once it is there.
    config = sys.modules.get("mmengine.config.config")
    if config is not None and config.FormatCode is not _unformatted_config_text:
        config.FormatCode = _unformatted_config_text
    dataset = sys.modules.get("mmengine.dataset.base_dataset")
    if dataset is not None and dataset.gc is gc:
        dataset.gc = _YoungGenerationGC


@pytest.fixture(scope="session")
def openslide_fixtures() -> Path:
    """Folder of small real slides from the openslide-python test-suite (read-only)."""
    path = Path(os.environ.get("CYTOLT_FIXTURES", FIXTURES)) / "openslide"
    if not path.is_dir():
        raise FileNotFoundError(f"slide fixtures not found at {path}; set CYTOLT_FIXTURES")
    return path
