"""Copy-paste augmentation for cells (cells, cell bank, numpy core, albumentations adapter).

The mmdet pipeline transform lives in ``cytolt.mm.transforms``; this package imports neither mmdet nor
albumentations (``cytolt.augment.albu`` imports albumentations when it is itself imported).
"""

from cytolt.augment.bank import CellBank
from cytolt.augment.cells import CellInstance, cut_instances, ellipse_masks, masks_to_boxes, soft_ellipse
from cytolt.augment.copy_paste import CellCopyPaste, Pasted, class_probabilities, paste_cells, paste_instances

__all__ = [
    "CellBank",
    "CellCopyPaste",
    "CellInstance",
    "Pasted",
    "class_probabilities",
    "cut_instances",
    "ellipse_masks",
    "masks_to_boxes",
    "paste_cells",
    "paste_instances",
    "soft_ellipse",
]
