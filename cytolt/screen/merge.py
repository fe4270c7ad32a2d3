"""Merge per-tile detections into one set for the slide, so a cell seen by several tiles is reported once.

Glossary:

- ``tiles``: (T, 4) float, ``x, y, w, h`` of each tile in level-0 pixels (the grid's read rectangles).
- ``per_tile``: T :class:`~cytolt.detect.types.Detections`, boxes already moved to level-0 pixels
  (``dets.scale(downsample).translate(x, y)``), box ``i`` of ``per_tile[t]`` seen inside tile ``t``.
- *extent*: the bounding box of all tiles; a tile edge on the extent is an outer edge, every other edge is
  *inner* (another tile normally continues the image there).
- *contested* box: one that reaches into a tile other than its own. Only contested boxes can have a twin from
  another tile (every box lies inside its own tile), so merging looks at them alone; everywhere else the
  detector's own NMS stands.

Rules, in order:

1. *Truncated* boxes give way to a fuller view, keeping their evidence. A box within ``border_margin`` px of an
   inner edge of its tile is probably a cell cut by that edge. When a box from another tile is larger and covers
   at least ``truncation_ios`` of it (intersection over the truncated box's area: IoU would miss a half-cell
   inside a whole one), the cut view takes the fullest such box's place: of the same label, it is dropped and
   the whole view keeps the higher of the two scores (and class scores); of another label, it moves onto the
   whole view's box, so :func:`cytolt.screen.cells.group_cells` makes the two one cell with both classes. A cut
   view often scores higher than the whole one, or as another class (a cell's abnormal part seen alone), and
   dropping it would lose the strongest evidence of the cell. By default the covering box may have any label.
2. The rest are merged: class-aware NMS (``torchvision.ops.batched_nms``) or weighted box fusion
   (``ensemble_boxes.weighted_boxes_fusion``; Solovyev et al., "Weighted boxes fusion", 2021).

A cell larger than the tile overlap is cut in both tiles; neither view is fuller, so it may be reported twice.
Choose an overlap larger than the largest cell (at 0.5 um/px a squamous cell is up to ~120 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from cytolt.detect.types import Detections
from cytolt.screen.settings import MERGE_METHODS

__all__ = ["MERGE_METHODS", "WBF_CONF_TYPES", "TruncationRule", "merge_tiles", "pairs_with_iou"]

WBF_CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")  # ensemble_boxes 1.0.9


@dataclass(frozen=True, kw_only=True)
class TruncationRule:
    """Rule 1's settings (see the module docstring).

    Attributes:
        border_margin: px; a box this close to an inner tile edge counts as truncated.
        min_ios: fraction of a truncated box that a larger box from another tile must cover.
        any_label: the covering box may have any label (default); False requires the same label.
    """

    border_margin: float = 2.0
    min_ios: float = 0.7
    any_label: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.min_ios <= 1.0:
            raise ValueError(f"min_ios must be in (0, 1]; got {self.min_ios}")


def merge_tiles(
    per_tile: Sequence[Detections],
    tiles: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
    *,
    method: str = "nms",
    iou_thr: float = 0.5,
    truncation: TruncationRule | None = TruncationRule(),  # noqa: B008 - frozen, so one shared default is safe
    class_agnostic: bool = False,
    wbf_conf_type: str = "avg",
) -> Detections:
    """Merge detections of overlapping tiles; returns one :class:`Detections` sorted by descending score.

    Args:
        per_tile: T detections in level-0 pixels, one per tile (may be empty).
        tiles: (T, 4) tile rectangles ``x, y, w, h`` in level-0 pixels.
        method: ``"nms"`` keeps the best-scoring box of each group; ``"wbf"`` averages the group's boxes
            weighted by score (score = mean score of the group) and its ``class_scores`` likewise.
        iou_thr: boxes of one class (of any class with ``class_agnostic``) with IoU above this are one object.
        truncation: rule 1's settings; None turns rule 1 off.
        class_agnostic: merge boxes of different labels too.
        wbf_conf_type: ``conf_type`` passed to ensemble_boxes (``"avg"``, ``"max"``, ...).

    Output tensors are on the device of the first input; the work itself runs on the CPU.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {', '.join(map(repr, MERGE_METHODS))}; got {method!r}")
    if wbf_conf_type not in WBF_CONF_TYPES:
        # checked here: ensemble_boxes calls exit() on an unknown conf_type
        raise ValueError(
            f"wbf_conf_type must be one of {', '.join(map(repr, WBF_CONF_TYPES))}; got {wbf_conf_type!r}"
        )
    tiles_np = np.asarray(tiles.cpu() if isinstance(tiles, torch.Tensor) else tiles, dtype=np.float64)
    if tiles_np.ndim != 2 or tiles_np.shape[1] != 4:
        raise ValueError(f"tiles must have shape (T, 4) as x, y, w, h; got {tiles_np.shape}")
    if len(per_tile) != len(tiles_np):
        raise ValueError(f"got {len(per_tile)} per-tile detections for {len(tiles_np)} tiles")
    if not 0.0 < iou_thr <= 1.0:
        raise ValueError(f"iou_thr must be in (0, 1]; got {iou_thr}")
    device = per_tile[0].device if len(per_tile) else torch.device("cpu")
    if not len(per_tile):
        return Detections.empty(device=device)

    dets = Detections.cat([d.to("cpu") for d in per_tile])
    if len(dets) == 0:
        return dets.to(device)
    tile_of = np.repeat(np.arange(len(per_tile)), [len(d) for d in per_tile])
    boxes = dets.boxes.double().numpy()
    tiles_xyxy = tiles_np.copy()
    tiles_xyxy[:, 2:] += tiles_xyxy[:, :2]

    contested = _contested(boxes, tile_of, tiles_xyxy)
    idx = np.flatnonzero(contested)
    if idx.size and truncation is not None:
        cover, same_cell = _fullest_cover(
            boxes[idx], dets.labels.numpy()[idx], tile_of[idx], tiles_xyxy, truncation
        )
        covered = cover >= 0
        # a cut view only hands its evidence to a cover it is a part of; inside another, larger cell it just goes
        dets, moved = _yield_to_cover(dets, idx, idx[np.maximum(cover, 0)], covered & same_cell)
        idx = idx[~(moved | (covered & ~same_cell))]
    passed = dets.select(torch.from_numpy(np.flatnonzero(~contested)))
    candidates = dets.select(torch.from_numpy(idx))
    if method == "nms":
        merged = _nms(candidates, iou_thr=iou_thr, class_agnostic=class_agnostic)
    else:
        merged = _wbf(candidates, iou_thr=iou_thr, class_agnostic=class_agnostic, conf_type=wbf_conf_type)
    out = Detections.cat([passed, merged])
    order = torch.argsort(out.scores, descending=True, stable=True)
    return out.select(order).to(device)


# -- rules ---------------------------------------------------------------------------------------------------


def _nms(dets: Detections, *, iou_thr: float, class_agnostic: bool) -> Detections:
    if len(dets) == 0:
        return dets
    boxes = dets.boxes.double()
    # IoU of level-0 coordinates (up to ~2e5 px) in float32 loses ~0.01 px; shift to the group's origin first.
    boxes = boxes - boxes[:, :2].min(dim=0).values.repeat(2)
    groups = torch.zeros_like(dets.labels) if class_agnostic else dets.labels
    keep = batched_nms(boxes, dets.scores.double(), groups, iou_thr)
    return dets.select(keep)


def _wbf(dets: Detections, *, iou_thr: float, class_agnostic: bool, conf_type: str) -> Detections:
    """Weighted box fusion of ``dets`` treated as the output of a single model.

    ensemble_boxes wants coordinates in [0, 1], so boxes are normalised by their own extent in float64 and
    mapped back afterwards. A fused box passes through ensemble_boxes' float32 arithmetic
    (``get_weighted_box``), so its error is at most extent x 2^-24: 0.012 px for a 200k px slide, the size
    of a float32 step at that coordinate anyway. With one model, the fused score is the mean score of the
    cluster (conf_type="avg").
    """
    if len(dets) == 0:
        return dets
    from ensemble_boxes import weighted_boxes_fusion

    boxes = dets.boxes.double().numpy()
    lo = boxes[:, :2].min(axis=0)
    span = np.maximum(boxes[:, 2:].max(axis=0) - lo, 1e-6)
    norm = (boxes - np.tile(lo, 2)) / np.tile(span, 2)
    labels = dets.labels.numpy()
    groups = np.zeros_like(labels) if class_agnostic else labels
    fused, scores, fused_groups = weighted_boxes_fusion(
        [norm],
        [dets.scores.double().numpy()],
        [groups],
        iou_thr=iou_thr,
        skip_box_thr=0.0,
        conf_type=conf_type,
    )
    fused = np.asarray(fused, dtype=np.float64) * np.tile(span, 2) + np.tile(lo, 2)
    fused_groups = np.asarray(fused_groups).astype(np.int64)
    # ensemble_boxes does not say which inputs formed each cluster: give every input to the fused box of its
    # group it overlaps most, then average labels' class scores over those members, weighted by score.
    member_of = _assign(boxes, groups, fused, fused_groups)
    weights = dets.scores.double().numpy()
    out_labels = fused_groups.copy()
    class_scores = None
    if dets.class_scores is not None:
        cs = dets.class_scores.double().numpy()
        class_scores = np.zeros((len(fused), cs.shape[1]))
        m = member_of >= 0
        np.add.at(class_scores, member_of[m], cs[m] * weights[m, None])
        class_scores /= np.maximum(np.bincount(member_of[m], weights[m], minlength=len(fused)), 1e-12)[
            :, None
        ]
    if class_agnostic:
        # the fused label is the label of the best-scoring member
        for i in np.argsort(weights, kind="stable"):  # ascending: the best member writes last
            if member_of[i] >= 0:
                out_labels[member_of[i]] = labels[i]
    return Detections(boxes=fused, scores=scores, labels=out_labels, class_scores=class_scores)


def _assign(boxes: np.ndarray, groups: np.ndarray, fused: np.ndarray, fused_groups: np.ndarray) -> np.ndarray:
    """Index of the fused box (same group, highest IoU) each input box belongs to; -1 for none.

    ensemble_boxes drops zero-area boxes, which then match nothing.
    """
    qi, rj = _candidate_pairs(boxes, fused)
    same = groups[qi] == fused_groups[rj]
    qi, rj = qi[same], rj[same]
    iou = _iou_pairs(boxes[qi], fused[rj])
    qi, rj, iou = qi[iou > 0], rj[iou > 0], iou[iou > 0]
    order = np.lexsort((-iou, qi))  # per input, the best IoU first
    member_of = np.full(len(boxes), -1, dtype=np.int64)
    first = np.ones(len(order), dtype=bool)
    first[1:] = qi[order][1:] != qi[order][:-1]
    member_of[qi[order][first]] = rj[order][first]
    return member_of


def _contested(boxes: np.ndarray, tile_of: np.ndarray, tiles_xyxy: np.ndarray) -> np.ndarray:
    """(N,) bool: the box overlaps (with positive area) a tile other than its own."""
    bi, tj = _candidate_pairs(boxes, tiles_xyxy)
    other = tile_of[bi] != tj
    bi, tj = bi[other], tj[other]
    hit = _inter_pairs(boxes[bi], tiles_xyxy[tj]) > 0
    out = np.zeros(len(boxes), dtype=bool)
    out[bi[hit]] = True
    return out


def _fullest_cover(
    boxes: np.ndarray, labels: np.ndarray, tile_of: np.ndarray, tiles_xyxy: np.ndarray, rule: TruncationRule
) -> tuple[np.ndarray, np.ndarray]:
    """Rule 1 for N contested boxes: ``cover`` (N,) int, for a box that touches an inner edge of its tile and is
    covered by a larger box from another tile, the index of the largest such box (-1 for every other box);
    ``same_cell`` (N,) bool, that cover is the whole view of the same cell: the box's edges away from its tile's
    border coincide with the cover's (within 4 px or a tenth of the box), as a cut view's do, and not those of
    a smaller cell lying inside a larger one."""
    extent = np.concatenate([tiles_xyxy[:, :2].min(axis=0), tiles_xyxy[:, 2:].max(axis=0)])
    own = tiles_xyxy[tile_of]
    inner = np.stack(
        [own[:, 0] > extent[0], own[:, 1] > extent[1], own[:, 2] < extent[2], own[:, 3] < extent[3]], axis=1
    )
    # one-sided, so a box a detector did not clip to its tile still counts as touching the edge it crosses
    near = np.concatenate(
        [boxes[:, :2] <= own[:, :2] + rule.border_margin, boxes[:, 2:] >= own[:, 2:] - rule.border_margin], 1
    )
    at_border = inner & near  # (N, 4): which of x0, y0, x1, y1 lies on an inner edge of its tile
    truncated = at_border.any(axis=1)
    out = np.full(len(boxes), -1, dtype=np.int64)
    same_cell = np.zeros(len(boxes), dtype=bool)
    if not truncated.any():
        return out, same_cell
    t_idx = np.flatnonzero(truncated)
    qi, rj = _candidate_pairs(boxes[t_idx], boxes)
    qi = t_idx[qi]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ok = (tile_of[qi] != tile_of[rj]) & (area[rj] > area[qi])
    if not rule.any_label:
        ok &= labels[qi] == labels[rj]
    qi, rj = qi[ok], rj[ok]
    ios = _inter_pairs(boxes[qi], boxes[rj]) / np.maximum(area[qi], 1e-12)
    qi, rj = qi[ios >= rule.min_ios], rj[ios >= rule.min_ios]
    order = np.lexsort((area[rj], qi))  # per truncated box, its covers by ascending area: the largest last
    out[qi[order]] = rj[order]
    q = np.flatnonzero(out >= 0)
    if len(q):
        r = out[q]
        side = np.minimum(boxes[q, 2] - boxes[q, 0], boxes[q, 3] - boxes[q, 1])
        tol = np.maximum(4.0, 0.1 * side)[:, None]
        agree = (np.abs(boxes[q] - boxes[r]) <= tol) | at_border[q]
        same_cell[q] = agree.all(axis=1)
    return out, same_cell


def _yield_to_cover(
    dets: Detections, idx: np.ndarray, cover: np.ndarray, covered: np.ndarray
) -> tuple[Detections, np.ndarray]:
    """Rule 1's outcome for the contested boxes ``idx`` (``cover`` their fullest covers, where ``covered``).

    Returns the detections with evidence moved onto the covers and the cut views of another label moved onto
    their cover's box, and (len(idx),) bool: which contested boxes are dropped (same label as their cover).
    """
    dropped = np.zeros(len(idx), dtype=bool)
    if not covered.any():
        return dets, dropped
    q, r = idx[covered], cover[covered]
    labels = dets.labels.numpy()
    same = labels[q] == labels[r]
    boxes = dets.boxes.clone()
    scores = dets.scores.clone()
    class_scores = None if dets.class_scores is None else dets.class_scores.clone()
    # same label: one view of one class; the whole view keeps the higher score
    q_same, r_same = torch.from_numpy(q[same]), torch.from_numpy(r[same])
    scores.scatter_reduce_(0, r_same, scores[q_same], reduce="amax")
    if class_scores is not None:
        index = r_same[:, None].expand(-1, class_scores.shape[1])
        class_scores.scatter_reduce_(0, index, class_scores[q_same], reduce="amax")
    # another label: the cut view moves onto the whole view, where group_cells joins them
    boxes[torch.from_numpy(q[~same])] = boxes[torch.from_numpy(r[~same])]
    dropped[np.flatnonzero(covered)[same]] = True
    out = Detections(boxes=boxes, scores=scores, labels=dets.labels, class_scores=class_scores)
    return out, dropped


# -- pairwise geometry on sparse candidate pairs ---------------------------------------------------------------


def _candidate_pairs(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) that may intersect, found with a uniform grid hash on box centres.

    The cell is at least as large as every box, so two intersecting boxes have centres at most one cell apart;
    the 3 x 3 neighbourhood of each query cell therefore holds every ref box that can touch it. Cost is linear
    in N plus the number of pairs, where the dense (Nq, Nr) matrix would not fit in memory for a slide.
    """
    if len(query) == 0 or len(ref) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sizes = np.concatenate([query[:, 2:] - query[:, :2], ref[:, 2:] - ref[:, :2]])
    cell = max(float(sizes.max()), 1.0)
    origin = np.minimum(query[:, :2].min(axis=0), ref[:, :2].min(axis=0))

    def keys(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = ((b[:, :2] + b[:, 2:]) / 2 - origin) // cell
        return c[:, 0].astype(np.int64), c[:, 1].astype(np.int64)

    stride = np.int64(1 << 31)  # rows never reach 2^31 cells, so (kx, ky) -> kx * stride + ky is unique
    rx, ry = keys(ref)
    rkey = rx * stride + ry
    order = np.argsort(rkey, kind="stable")
    sorted_keys = rkey[order]
    qx, qy = keys(query)
    pairs_q, pairs_r = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            k = (qx + dx) * stride + (qy + dy)
            lo = np.searchsorted(sorted_keys, k, "left")
            hi = np.searchsorted(sorted_keys, k, "right")
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            q = np.repeat(np.arange(len(query)), counts)
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            pairs_q.append(q)
            pairs_r.append(order[np.repeat(lo, counts) + offsets])
    if not pairs_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pairs_q), np.concatenate(pairs_r)


def pairs_with_iou(boxes: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of ``boxes`` (N, 4) xyxy whose IoU is at least ``min_iou``."""
    qi, rj = _candidate_pairs(boxes, boxes)
    later = qi < rj
    qi, rj = qi[later], rj[later]
    keep = _iou_pairs(boxes[qi], boxes[rj]) >= min_iou
    return qi[keep], rj[keep]


def _inter_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = _inter_pairs(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)
