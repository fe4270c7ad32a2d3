"""Synthetic cervical cytology (TCT): long-tailed cell patches and pyramidal slides with exact ground truth.

See docs/synth.md. Public API:

- :data:`CLASSES`, :data:`CLASS_COLORS`, :data:`SLIDE_LABELS`: the detection classes (head to tail), their
  display colours and what each slide-level Bethesda category implies.
- :func:`make_patch_dataset`: COCO + LVIS patch dataset with a configurable long tail.
- :func:`make_slide`: pyramidal TIFF / Aperio-like SVS / OME-TIFF slide and its ``.cells.json`` ground truth.
"""

from cytolt.category_stats import lvis_frequency
from cytolt.synth.classes import CLASS_COLORS, CLASS_DEFINITIONS, CLASSES, SLIDE_LABELS
from cytolt.synth.patches import (
    frequency_thresholds,
    long_tail_counts,
    long_tail_instances_per_class,
    make_patch_dataset,
    render_patch,
)
from cytolt.synth.slide import SLIDE_FORMATS, SlideCell, SlideTruth, cells_path_for, make_slide

__all__ = [
    "CLASSES",
    "CLASS_COLORS",
    "CLASS_DEFINITIONS",
    "SLIDE_FORMATS",
    "SLIDE_LABELS",
    "SlideCell",
    "SlideTruth",
    "cells_path_for",
    "frequency_thresholds",
    "long_tail_counts",
    "long_tail_instances_per_class",
    "lvis_frequency",
    "make_patch_dataset",
    "make_slide",
    "render_patch",
]
