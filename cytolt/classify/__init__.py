"""Second-stage cell classifier: crops of candidate cells, a narrow ResNet-18, its model folder and metrics.

Framework-free like :mod:`cytolt.losses`: torch, torchvision, numpy and safetensors (plus cytolt's own readers);
never mmdet, mmengine, mmcv or napari (tests/classify/test_imports.py). See docs/classify.md.

    crops        CropSet (N, S, S, 3) uint8 + labels; crops_from_coco / _slides / _run / _boxes
    synth_crops  make_crop_set: long-tailed synthetic crops (import it explicitly: it loads cytolt.synth)
    model        CellClassifier: backbone (N, 3, S, S) in [0, 1] -> (N, D), head (N, D) -> (N, K)
    folder       ClassifierFolder: classifier.json + classifier.safetensors; register_head for methods' heads
    metrics      classification_report: accuracy, balanced, many/medium/few-shot, per-class recall, ECE, NLL
    predict      CropClassifier: what screening calls (crops or a slide's boxes -> probabilities)
"""

from cytolt.classify.crops import (
    CONTEXT,
    CropSet,
    crop_squares,
    crops_from_boxes,
    crops_from_coco,
    crops_from_image,
    crops_from_run,
    crops_from_slides,
)
from cytolt.classify.folder import CLASSIFIER_FORMAT, ClassifierFolder, register_head, registered_heads
from cytolt.classify.metrics import (
    bootstrap_report,
    classification_report,
    expected_calibration_error,
    format_report,
    shot_groups,
)
from cytolt.classify.model import CellClassifier
from cytolt.classify.predict import CropClassifier

__all__ = [
    "CLASSIFIER_FORMAT",
    "CONTEXT",
    "CellClassifier",
    "ClassifierFolder",
    "CropClassifier",
    "CropSet",
    "bootstrap_report",
    "classification_report",
    "crop_squares",
    "crops_from_boxes",
    "crops_from_coco",
    "crops_from_image",
    "crops_from_run",
    "crops_from_slides",
    "expected_calibration_error",
    "format_report",
    "register_head",
    "registered_heads",
    "shot_groups",
]
