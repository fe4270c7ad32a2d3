"""Tiled screening of whole slides: tiled inference, cross-tile merging and the batch runner.

screen_slide(slide, detector) -> SlideResult        one slide: tiles -> detector -> merge -> store -> score
screen_slides(paths, model, run_dir) -> RunSummary  many slides into a run folder (``cytolt screen``): resume,
                                                    per-slide timeout, Dask workers (cytolt.screen.distributed)
collect_slides(inputs) -> [Path]                    slide files from files, folders, globs and CSV lists
merge_tiles(per_tile, tiles)                        cross-tile NMS or weighted box fusion
"""

from cytolt.screen.batch import RunSummary, ScreeningInterrupted, screen_slides
from cytolt.screen.engine import SlideResult, SlideTimeout, default_scorer, screen_slide, tile_grid
from cytolt.screen.inputs import SLIDE_SUFFIXES, collect_slides, model_identity
from cytolt.screen.merge import MERGE_METHODS, merge_tiles

__all__ = [
    "MERGE_METHODS",
    "merge_tiles",
    # engine and batch runner
    "RunSummary",
    "ScreeningInterrupted",
    "SlideResult",
    "SlideTimeout",
    "default_scorer",
    "screen_slide",
    "screen_slides",
    "tile_grid",
    # inputs
    "SLIDE_SUFFIXES",
    "collect_slides",
    "model_identity",
]
