"""Confusion matrix of matched detections, and its plot.

Layout, C = number of categories (sorted by id):
    matrix[i, j]  i < C: ground-truth class i;  i == C: no ground truth ("background", a false positive)
                  j < C: predicted class j;     j == C: no detection ("missed")
    matrix[C, C] is always 0.

Matching, per image, on detections with score >= score_thr and non-crowd, non-ignored ground truth:
    1. same class first, COCO's rule: detections in decreasing score each take the unmatched ground
       truth of their class with the highest IoU >= iou_thr. The diagonal is therefore exactly the true
       positives COCO AP counts at this IoU and score threshold.
    2. then across classes: each remaining detection, in decreasing score, takes the remaining ground truth
       of any class with the highest IoU >= iou_thr; such a pair is a confusion (off-diagonal).
    Everything left over goes to the "background" row (detections) or "missed" column (ground truth).
No federated rules apply: for LVIS data the matrix treats every image as exhaustively annotated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolt.evaluate._common import DetectionsLike, GtLike, load_detections, load_gt, sorted_categories

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) boxes in COCO's [x, y, w, h] (continuous coordinates, area w*h) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match(
    ious: np.ndarray, det_order: np.ndarray, allowed: np.ndarray, gt_taken: np.ndarray, iou_thr: float
) -> dict[int, int]:
    """Greedy matching: each detection (in ``det_order``) takes the free allowed gt of highest IoU >= thr."""
    pairs: dict[int, int] = {}
    for d in det_order:
        cand = np.where(allowed[d] & ~gt_taken & (ious[d] >= iou_thr))[0]
        if cand.size:
            g = int(cand[np.argmax(ious[d, cand])])
            gt_taken[g] = True
            pairs[int(d)] = g
    return pairs


def confusion_matrix(
    gt: GtLike, detections: DetectionsLike, *, iou_thr: float = 0.5, score_thr: float = 0.3
) -> np.ndarray:
    """Count matched detections by (ground-truth class, predicted class); see the module docstring.

    Args:
        gt: COCO or LVIS ground truth (dict or JSON path); boxes [x, y, w, h] in image pixels.
        detections: results list (image_id, category_id, bbox xywh, score) or its JSON path.
        iou_thr: minimum box IoU for a match.
        score_thr: detections below this score are dropped first.

    Returns:
        (C + 1, C + 1) int64 matrix; class names in the same order: ``category_names(gt)``.
    """
    if not 0.0 < iou_thr <= 1.0:
        raise ValueError(f"iou_thr must be in (0, 1]; got {iou_thr}")
    gt_data, source = load_gt(gt, lvis=False)
    dets = load_detections(detections, gt_data, source, iou_type="bbox")
    index = {c["id"]: i for i, c in enumerate(sorted_categories(gt_data))}
    n_cls = len(index)
    matrix = np.zeros((n_cls + 1, n_cls + 1), dtype=np.int64)

    gts_by_img: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in gt_data["annotations"]:
        if not ann.get("iscrowd", 0) and not ann.get("ignore", 0):
            gts_by_img[ann["image_id"]].append(ann)
    dets_by_img: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for det in dets:
        if det["score"] >= score_thr:
            dets_by_img[det["image_id"]].append(det)

    for img_id in gts_by_img.keys() | dets_by_img.keys():
        g_list, d_list = gts_by_img.get(img_id, []), dets_by_img.get(img_id, [])
        g_cls = np.array([index[g["category_id"]] for g in g_list], dtype=np.int64)
        d_cls = np.array([index[d["category_id"]] for d in d_list], dtype=np.int64)
        ious = box_iou_xywh(np.array([d["bbox"] for d in d_list]), np.array([g["bbox"] for g in g_list]))
        # Stable sort: equal scores keep input order, as in pycocotools.
        order = np.argsort([-d["score"] for d in d_list], kind="mergesort")
        gt_taken = np.zeros(len(g_list), dtype=bool)
        same = _match(ious, order, d_cls[:, None] == g_cls[None], gt_taken, iou_thr)
        rest = np.array([d for d in order if d not in same], dtype=np.int64)
        cross = _match(ious, rest, np.ones_like(ious, dtype=bool), gt_taken, iou_thr)
        pairs = same | cross
        for d, g in pairs.items():
            matrix[g_cls[g], d_cls[d]] += 1
        np.add.at(matrix, (g_cls[~gt_taken], n_cls), 1)
        unmatched = np.array([d for d in range(len(d_list)) if d not in pairs], dtype=np.int64)
        np.add.at(matrix, (n_cls, d_cls[unmatched]), 1)
    return matrix


def plot_confusion(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path | None = None,
    *,
    normalize: bool = False,
    title: str | None = None,
) -> Figure:
    """Draw ``confusion_matrix``'s output as a labelled heat map; save it to ``path`` (PNG, SVG, PDF) if given.

    ``normalize=True`` divides each row by its total (a row's share of ground truth per outcome); the
    printed cell values stay counts either way. Uses ``matplotlib.figure.Figure`` directly, so no pyplot
    state or GUI backend is touched.
    """
    from matplotlib.figure import Figure

    m = np.asarray(matrix)
    n = len(class_names)
    if m.shape != (n + 1, n + 1):
        raise ValueError(f"matrix must be ({n + 1}, {n + 1}) for {n} class names; got {m.shape}")
    rows = [*class_names, "background"]
    cols = [*class_names, "missed"]
    shade = m.astype(np.float64)
    if normalize:
        totals = shade.sum(axis=1, keepdims=True)
        shade = np.divide(shade, totals, out=np.zeros_like(shade), where=totals > 0)
    size = 1.2 + 0.6 * (n + 1)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    im = ax.imshow(shade, cmap="Blues")
    fig.colorbar(im, ax=ax, label="row fraction" if normalize else "count")
    ax.set_xticks(range(n + 1), cols, rotation=45, ha="right")
    ax.set_yticks(range(n + 1), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if title:
        ax.set_title(title)
    top = shade.max() if shade.size else 0
    for i in range(n + 1):
        for j in range(n + 1):
            color = "white" if top and shade[i, j] > 0.5 * top else "black"
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
