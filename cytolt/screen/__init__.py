"""Tiled screening of whole slides: tiled inference, cross-tile merging and the batch runner.

merge_tiles(per_tile, tiles)                        cross-tile NMS or weighted box fusion
"""

from cytolt.screen.merge import MERGE_METHODS, merge_tiles

__all__ = ["MERGE_METHODS", "merge_tiles"]
