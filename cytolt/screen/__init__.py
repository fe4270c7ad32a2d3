"""Tiled screening of whole slides: one slide, many slides into a run folder, cross-tile merging.

screen_slide(slide, detector, settings) -> SlideResult   one slide: tiles -> detector -> merge -> score (pure)
screen_slides(paths, model, run_dir, settings)           many slides into a run folder (``cytolt screen``):
    -> RunSummary                                        resume, timeouts, executors (local, Dask)
ScreenSettings                                           how slides are screened: one frozen, validated value
RunRecorder                                              the only writer of a run folder (store, reports)
LocalExecutor, DaskExecutor                              where slides are screened
collect_slides(inputs) -> [Path]                         slide files from files, folders, globs and CSV lists
merge_tiles(per_tile, tiles)                             cross-tile NMS or weighted box fusion
"""

from cytolt.screen.batch import ScreeningInterrupted, screen_slides
from cytolt.screen.distributed import DaskExecutor
from cytolt.screen.engine import (
    SlideResult,
    SlideTimeout,
    attempt_slide,
    default_scorer,
    screen_slide,
    tile_grid,
)
from cytolt.screen.executors import LocalExecutor, SlideJob
from cytolt.screen.inputs import collect_slides
from cytolt.screen.merge import merge_tiles
from cytolt.screen.recorder import RunCallbacks, RunRecorder, RunSummary
from cytolt.screen.settings import MERGE_METHODS, ScreenSettings, default_overlap

__all__ = [
    "MERGE_METHODS",
    "DaskExecutor",
    "LocalExecutor",
    "RunCallbacks",
    "RunRecorder",
    "RunSummary",
    "ScreenSettings",
    "ScreeningInterrupted",
    "SlideJob",
    "SlideResult",
    "SlideTimeout",
    "attempt_slide",
    "collect_slides",
    "default_overlap",
    "default_scorer",
    "merge_tiles",
    "screen_slide",
    "screen_slides",
    "tile_grid",
]
