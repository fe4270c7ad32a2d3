"""Tiled screening of whole slides: tiled inference, cross-tile merging and the batch runner.

screen_slide(slide, detector) -> SlideResult        one slide: tiles -> detector -> merge -> store -> score
screen_slides(paths, model, run_dir) -> RunSummary  many slides into a run folder (``cytolt screen``)
merge_tiles(per_tile, tiles)                        cross-tile NMS or weighted box fusion
"""

from cytolt.screen.batch import RunSummary, screen_slides
from cytolt.screen.engine import SlideResult, default_scorer, screen_slide, tile_grid
from cytolt.screen.merge import MERGE_METHODS, merge_tiles

__all__ = [
    "MERGE_METHODS",
    "merge_tiles",
    # engine and batch runner
    "RunSummary",
    "SlideResult",
    "default_scorer",
    "screen_slide",
    "screen_slides",
    "tile_grid",
]
