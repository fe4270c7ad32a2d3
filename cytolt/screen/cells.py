"""One cell, one record: boxes of different classes on the same cell grouped into one detection.

The cross-tile merge is class-aware, so a cell the detector scored as two classes (an LSIL box and an HSIL box
on one koilocyte) keeps both boxes. Counts, adequacy, the gallery and the review queue must count cells, so
after the merge such boxes are grouped:

- two boxes of different labels are one cell when their IoU is at least ``min_iou``; groups are closed
  transitively. 0.75: a one-stage detector regresses one box per anchor for every class, so its boxes of two
  classes on one cell nearly coincide (and rule 1 of the merge moves a cut view exactly onto the whole view),
  while distinct cells that overlap do not: on the 2048-px synthetic HSIL slide (seed 1) the planted cells of
  different classes overlapped at most at IoU 0.67. NMS's 0.5 would join such neighbours;
- the cell's class probabilities are the per-class maximum over its boxes (``class_scores`` when the detector
  gives them, else each box's score at its label), so no class's evidence is lost;
- its box is the box of its best-scoring member, its label the most probable class, its score that probability.

Glossary: ``dets`` boxes (N, 4) xyxy float32 level-0 px; ``P`` (N, C) class probabilities.
"""

from __future__ import annotations

import numpy as np
import torch

from cytolt.detect.types import Detections
from cytolt.screen.merge import pairs_with_iou

__all__ = ["class_probabilities", "group_cells"]


def class_probabilities(dets: Detections, num_classes: int) -> np.ndarray:
    """(N, C) float64: ``class_scores`` if the detector gave them, else each box's score at its label."""
    if dets.class_scores is not None:
        if dets.class_scores.shape[1] != num_classes:
            raise ValueError(
                f"class_scores has {dets.class_scores.shape[1]} columns for {num_classes} classes"
            )
        return dets.class_scores.double().cpu().numpy()
    labels = dets.labels.cpu().numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]")
    P = np.zeros((len(labels), num_classes))
    P[np.arange(len(labels)), labels] = dets.scores.double().cpu().numpy()
    return P


def group_cells(dets: Detections, num_classes: int, *, min_iou: float = 0.75) -> Detections:
    """One detection per cell (see the module docstring), with ``class_scores`` (N', C), sorted by score."""
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1]; got {min_iou}")
    P = class_probabilities(dets, num_classes)
    n = len(P)
    if n == 0:
        return Detections(
            boxes=dets.boxes.cpu(), scores=dets.scores.cpu(), labels=dets.labels.cpu(), class_scores=P
        ).to(dets.device)
    boxes = dets.boxes.double().cpu().numpy()
    labels = dets.labels.cpu().numpy()
    qi, rj = pairs_with_iou(boxes, min_iou)
    other = labels[qi] != labels[rj]
    parent = np.arange(n)
    for a, b in zip(qi[other], rj[other], strict=True):
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups = np.array([_root(parent, i) for i in range(n)])
    ids, member = np.unique(groups, return_inverse=True)
    cell_p = np.zeros((len(ids), num_classes))
    np.maximum.at(cell_p, member, P)
    scores = dets.scores.double().cpu().numpy()
    best = np.full(len(ids), -1)
    for i in np.argsort(scores, kind="stable"):  # ascending: each cell's best-scoring box writes last
        best[member[i]] = i
    cell_labels = cell_p.argmax(axis=1)
    cell_scores = cell_p[np.arange(len(ids)), cell_labels]
    order = np.argsort(-cell_scores, kind="stable")
    out = Detections(
        boxes=torch.from_numpy(boxes[best[order]]).float(),
        scores=torch.from_numpy(cell_scores[order]).float(),
        labels=torch.from_numpy(cell_labels[order]).long(),
        class_scores=torch.from_numpy(cell_p[order]).float(),
    )
    return out.to(dets.device)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)
