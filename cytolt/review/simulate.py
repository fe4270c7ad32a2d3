"""A reviewer simulated from ground truth, for measuring the review-to-training loop on synthetic slides.

Each detection at or above ``min_score`` is matched to the ground-truth cells (greedily, best score first, by
IoU at least ``iou_thr``, one detection per cell, any class): a match of the same class is accepted, a match of
another class is reclassified to the cell's class, no match is rejected. That is what a cytotechnologist does
with every candidate shown, so it models a review of all candidates above a score; a real reviewer who sees
only the gallery reviews fewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from cytolt.store import DetectionStore

__all__ = ["SimulatedReview", "simulate_review"]


@dataclass(frozen=True)
class SimulatedReview:
    """Decisions recorded on one slide."""

    accepted: int
    reclassified: int
    rejected: int


def simulate_review(
    store: DetectionStore,
    slide_id: int,
    truth_boxes: np.ndarray,
    truth_labels: Sequence[int],
    *,
    min_score: float = 0.3,
    iou_thr: float = 0.5,
    reviewer: str = "simulated",
) -> SimulatedReview:
    """Review a slide's detections against ground truth (``truth_boxes`` (M, 4) xyxy level-0 px, labels (M,)
    in the store's class order) and record the decisions in ``store`` (module rules)."""
    cols = store.columns(slide_id, min_score=min_score)  # best score first
    truth = torch.as_tensor(np.asarray(truth_boxes, np.float64).reshape(-1, 4), dtype=torch.float32)
    truth_labels = np.asarray(truth_labels, np.int64)
    iou = box_iou(torch.as_tensor(cols["boxes"], dtype=torch.float32), truth).numpy() if len(truth) else None
    taken = np.zeros(len(truth), bool)
    counts = {"accept": 0, "reclassify": 0, "reject": 0}
    for i, det_id in enumerate(cols["id"].tolist()):
        match = -1
        if iou is not None and len(iou[i]):
            candidates = np.where(taken, -1.0, iou[i])
            best = int(candidates.argmax())
            match = best if candidates[best] >= iou_thr else -1
        if match < 0:
            store.add_review(det_id, "reject", reviewer=reviewer)
            counts["reject"] += 1
            continue
        taken[match] = True
        if int(truth_labels[match]) == int(cols["labels"][i]):
            store.add_review(det_id, "accept", reviewer=reviewer)
            counts["accept"] += 1
        else:
            store.add_review(det_id, "reclassify", reviewer=reviewer, new_label=int(truth_labels[match]))
            counts["reclassify"] += 1
    return SimulatedReview(counts["accept"], counts["reclassify"], counts["reject"])
