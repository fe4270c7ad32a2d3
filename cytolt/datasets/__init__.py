"""Training datasets: COCO checked and given LVIS fields, and sets built from annotated slides or reviews.

    check_coco(doc, source=..., image_root=...)   errors name the file and the entry, before any training
    with_lvis_fields(doc, train=...)              plain COCO -> the fields the long-tail metric needs
    class_table(train) / format_class_table(...)  instances, images and frequency group per class
    build_dataset(slides, annotations, out, ...)  ``cytolt dataset build``: QuPath GeoJSON / COCO / CSV on slides
    from_review.review_dataset(run_dir, out)      ``cytolt dataset from-review`` (imports the store, so torch)

Framework-free (numpy, OpenCV and the standard library; no torch, mmdet or napari, but for ``from_review``).
"""

from cytolt.datasets.annotations import SlideAnnotation, read_annotations, write_qupath_geojson
from cytolt.datasets.build import DatasetSummary, build_dataset, patch_records, write_coco_split
from cytolt.datasets.class_map import ClassMap, UnmappedClassError, load_class_map
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
from cytolt.datasets.patches import Patch, PatchWindow, extract_patches
from cytolt.datasets.split import split_slides

__all__ = [
    "AnnotationError",
    "ClassMap",
    "ClassRow",
    "DatasetSummary",
    "Patch",
    "PatchWindow",
    "SlideAnnotation",
    "UnmappedClassError",
    "build_dataset",
    "check_coco",
    "check_splits",
    "class_table",
    "extract_patches",
    "format_class_table",
    "is_lvis",
    "load_class_map",
    "patch_records",
    "read_annotations",
    "read_coco",
    "split_slides",
    "with_lvis_fields",
    "write_coco_split",
    "write_qupath_geojson",
]
