"""Detection and slide-level evaluation: LVIS/COCO AP (faster-coco-eval by default, lvis-api and pycocotools as
the references, same numbers), fixed AP, per-class AP, a confusion matrix of matched detections, and slide AUC /
sensitivity at specificity.

Importing this package loads numpy only; faster-coco-eval, lvis-api, pycocotools, scipy and matplotlib are
imported by the functions that use them. Never imports mmdet. See docs/evaluate.md.
"""

from cytolt.evaluate._common import category_names
from cytolt.evaluate._fast import ENGINES
from cytolt.evaluate.coco import coco_eval
from cytolt.evaluate.confusion import confusion_matrix, plot_confusion
from cytolt.evaluate.fixed_ap import fixed_ap, top_k_per_class
from cytolt.evaluate.lvis import LVISEvaluator, lvis_eval
from cytolt.evaluate.per_class import per_class_ap
from cytolt.evaluate.precision import per_class_ap_from_eval
from cytolt.evaluate.screening import (
    at_cutoffs,
    confusion,
    counted_call,
    gallery_hit_rate,
    proportion,
    roc_auc_with_ci,
    sensitivity_specificity,
    triage_fraction,
    wilson_interval,
)
from cytolt.evaluate.slide import plot_roc, roc_curve, sensitivity_at_specificity, slide_auc

__all__ = [
    "ENGINES",
    "LVISEvaluator",
    "at_cutoffs",
    "category_names",
    "coco_eval",
    "confusion",
    "confusion_matrix",
    "counted_call",
    "fixed_ap",
    "gallery_hit_rate",
    "lvis_eval",
    "per_class_ap",
    "per_class_ap_from_eval",
    "plot_confusion",
    "plot_roc",
    "proportion",
    "roc_auc_with_ci",
    "roc_curve",
    "sensitivity_at_specificity",
    "sensitivity_specificity",
    "slide_auc",
    "top_k_per_class",
    "triage_fraction",
    "wilson_interval",
]
