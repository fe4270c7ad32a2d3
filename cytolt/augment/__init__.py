"""Copy-paste augmentation for cells (numpy core, cell bank, albumentations adapter).

The mmdet pipeline transform lives in ``cytolt.mm.transforms``; this package imports neither mmdet nor
albumentations (``cytolt.augment.albu`` imports albumentations when it is itself imported).
"""

from cytolt.augment.bank import CellBank
from cytolt.augment.copy_paste import (
    CellCopyPaste,
    CellInstance,
    Pasted,
    class_probabilities,
    class_repeat_factors,
    cut_instances,
    ellipse_masks,
    masks_to_boxes,
    paste_cells,
    paste_instances,
    soft_ellipse,
)

__all__ = [
    "CellBank",
    "CellCopyPaste",
    "CellInstance",
    "Pasted",
    "class_probabilities",
    "class_repeat_factors",
    "cut_instances",
    "ellipse_masks",
    "masks_to_boxes",
    "paste_cells",
    "paste_instances",
    "soft_ellipse",
]
