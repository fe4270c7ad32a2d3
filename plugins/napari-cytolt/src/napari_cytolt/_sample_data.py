"""npe2 sample data: a synthetic HSIL slide with detections, generated into a cache folder on first use."""

from __future__ import annotations

import os
from pathlib import Path

from cytolt.demo_run import cached_demo_run
from napari_cytolt._reader import LayerData, read_run

__all__ = ["sample_cache_dir", "sample_run"]

# Bump when the sample's recipe changes, so an old cache is not reused (2: the run records its class colours;
# 3: its examined tiles and an adequacy minimum for its size).
SAMPLE_VERSION = 3
SAMPLE_SIZE = (8192, 6144)  # level-0 px at 0.25 um/px: 2 x 1.5 mm, written in about 2 s on 2 cores


def sample_cache_dir() -> Path:
    """``$CYTOLT_CACHE/napari-sample-v<N>`` (default ``~/.cache/cytolt``, as the rest of cytolt)."""
    root = Path(os.environ.get("CYTOLT_CACHE", str(Path.home() / ".cache" / "cytolt")))
    return root / f"napari-sample-v{SAMPLE_VERSION}"


def sample_run() -> list[LayerData]:
    """The sample run's slide and detections (the review widget attaches to them)."""
    run = cached_demo_run(sample_cache_dir(), size=SAMPLE_SIZE, label="HSIL", seed=0)
    return read_run(run.run_dir)
