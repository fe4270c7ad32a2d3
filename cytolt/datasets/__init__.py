"""Training datasets: COCO checked and given LVIS fields (``coco``), and sets built from annotated slides.

    check_coco(doc, source=..., image_root=...)   errors name the file and the entry, before any training
    with_lvis_fields(doc, train=...)              plain COCO -> the fields the long-tail metric needs
    class_table(train) / format_class_table(...)  instances, images and frequency group per class

Framework-free (numpy and the standard library; no torch, mmdet or napari).
"""

from cytolt.datasets.coco import (
    AnnotationError,
    ClassRow,
    check_coco,
    check_splits,
    class_table,
    format_class_table,
    is_lvis,
    read_coco,
    with_lvis_fields,
)

__all__ = [
    "AnnotationError",
    "ClassRow",
    "check_coco",
    "check_splits",
    "class_table",
    "format_class_table",
    "is_lvis",
    "read_coco",
    "with_lvis_fields",
]
