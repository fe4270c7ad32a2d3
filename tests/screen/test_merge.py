"""Tests of cytolt.screen.merge: every planted cell is found exactly once after cross-tile merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.detect.types import Detections
from cytolt.screen.cells import group_cells
from cytolt.screen.merge import TruncationRule, merge_tiles


def _grid(width: int, height: int, tile: int, overlap: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Tiles x, y, w, h covering [0, width) x [0, height) with ``overlap`` px shared; last ones clipped."""
    stride = tile - overlap
    xs = list(range(0, max(width - overlap, 1), stride))
    ys = list(range(0, max(height - overlap, 1), stride))
    out = [(x, y, min(tile, width - x), min(tile, height - y)) for y in ys for x in xs]
    arr = np.array(out, dtype=np.float64)
    arr[:, :2] += origin
    return arr


def _plant_cells(
    rng: np.random.Generator, width: int, height: int, n: int, size: tuple[int, int]
) -> np.ndarray:
    """n boxes (xyxy) with sides in ``size``, at least 4 px apart so distinct cells never merge."""
    cells: list[np.ndarray] = []
    while len(cells) < n:
        w, h = rng.uniform(*size, 2)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = np.array([x, y, x + w, y + h])
        if all(
            box[0] > c[2] + 4 or c[0] > box[2] + 4 or box[1] > c[3] + 4 or c[1] > box[3] + 4 for c in cells
        ):
            cells.append(box)
    return np.array(cells)


def _simulate_detector(
    rng: np.random.Generator,
    cells: np.ndarray,
    cell_labels: np.ndarray,
    tiles: np.ndarray,
    *,
    num_classes: int,
    jitter: float = 0.5,
    min_visible: float = 0.15,
    wrong_label_when_cut: float = 0.5,
) -> list[Detections]:
    """What a detector run on each tile would report, in level-0 pixels.

    A cell is detected in a tile when at least ``min_visible`` of its area is inside; the box is the visible
    part (so cut cells give truncated boxes ending at the tile edge) plus jitter, clipped to the tile. Cut
    views get a wrong label with probability ``wrong_label_when_cut``, as a real detector often does.
    """
    out = []
    for x, y, w, h in tiles:
        t = np.array([x, y, x + w, y + h])
        boxes, scores, labels, class_scores = [], [], [], []
        for cell, lab in zip(cells, cell_labels, strict=True):
            vis = np.r_[np.maximum(cell[:2], t[:2]), np.minimum(cell[2:], t[2:])]
            vis_area = max(vis[2] - vis[0], 0) * max(vis[3] - vis[1], 0)
            area = (cell[2] - cell[0]) * (cell[3] - cell[1])
            if vis_area < min_visible * area:
                continue
            cut = vis_area < area - 1e-9
            box = vis + rng.uniform(-jitter, jitter, 4)
            box = np.r_[np.maximum(box[:2], t[:2]), np.minimum(box[2:], t[2:])]
            label = int(lab)
            if cut and rng.random() < wrong_label_when_cut:
                label = int((lab + 1) % num_classes)
            cs = rng.dirichlet(np.ones(num_classes)) * 0.3
            cs[label] += 0.7
            boxes.append(box)
            scores.append(cs[label])
            labels.append(label)
            class_scores.append(cs)
        if boxes:
            out.append(Detections(boxes=boxes, scores=scores, labels=labels, class_scores=class_scores))
        else:
            out.append(Detections.empty(num_classes=num_classes))
    return out


def _match(found: Detections, cells: np.ndarray) -> np.ndarray:
    """(n_cells,) number of found boxes whose centre is within 3 px of the cell centre and IoU >= 0.8."""
    fb = found.boxes.double().numpy()
    counts = np.zeros(len(cells), dtype=int)
    for i, c in enumerate(cells):
        inter_w = np.clip(np.minimum(fb[:, 2], c[2]) - np.maximum(fb[:, 0], c[0]), 0, None)
        inter_h = np.clip(np.minimum(fb[:, 3], c[3]) - np.maximum(fb[:, 1], c[1]), 0, None)
        inter = inter_w * inter_h
        union = (fb[:, 2] - fb[:, 0]) * (fb[:, 3] - fb[:, 1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
        centre = np.hypot((fb[:, 0] + fb[:, 2] - c[0] - c[2]) / 2, (fb[:, 1] + fb[:, 3] - c[1] - c[3]) / 2)
        counts[i] = int(((inter / union >= 0.8) & (centre <= 3)).sum())
    return counts


@pytest.mark.parametrize("method", ["nms", "wbf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_planted_cell_is_found_exactly_once(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height, num_classes = 1000, 900, 4
    tiles = _grid(width, height, tile=256, overlap=64)
    cells = _plant_cells(rng, width, height, n=70, size=(20, 50))  # overlap 64 > largest cell 50
    labels = rng.integers(0, num_classes, len(cells))
    per_tile = _simulate_detector(rng, cells, labels, tiles, num_classes=num_classes)
    raw = Detections.cat(per_tile)
    # the scenario must really contain duplicates and truncated boxes, or the test proves nothing
    assert (_match(raw, cells) >= 2).sum() > 5
    assert len(raw) > len(cells) + 20

    merged = group_cells(merge_tiles(per_tile, tiles, method=method), num_classes)

    assert len(merged) == len(cells), f"{len(merged)} detections for {len(cells)} cells"
    counts = _match(merged, cells)
    assert (counts == 1).all(), f"cells found {counts[counts != 1]} times"
    assert torch.all(merged.scores[:-1] >= merged.scores[1:])  # sorted by score
    # every cell keeps its planted class's evidence (a whole view scores it >= 0.7), whatever its cut views said
    order = [int(np.argmax(_match(merged.select([i]), cells))) for i in range(len(merged))]
    planted = merged.class_scores.numpy()[np.arange(len(merged)), labels[order]]
    assert (planted >= 0.7 - 1e-6).all()
    assert (merged.scores.numpy() >= planted - 1e-6).all()


def test_a_cut_view_gives_way_to_the_whole_view_and_keeps_its_evidence() -> None:
    # two tiles side by side sharing x in [192, 256); a cell at x 230-280 is whole only in the right tile
    tiles = np.array([[0, 0, 256, 256], [192, 0, 256, 256]], dtype=float)
    left = Detections(
        boxes=[[230, 100, 256, 140]], scores=[0.95], labels=[3], class_scores=[[0, 0, 0.05, 0.95]]
    )
    right = Detections(
        boxes=[[230, 100, 280, 140]], scores=[0.6], labels=[1], class_scores=[[0.1, 0.6, 0.2, 0.1]]
    )
    whole = torch.tensor([230.0, 100, 280, 140])
    for method in ("nms", "wbf"):
        # another label: the cut view moves onto the whole view's box, and the two are one cell
        merged = merge_tiles([left, right], tiles, method=method)
        assert len(merged) == 2 and all(torch.allclose(b, whole) for b in merged.boxes)
        (cell,) = [group_cells(merged, 4)]
        assert len(cell) == 1 and torch.allclose(cell.boxes[0], whole)
        torch.testing.assert_close(cell.class_scores[0], torch.tensor([0.1, 0.6, 0.2, 0.95]))
        assert int(cell.labels[0]) == 3 and float(cell.scores[0]) == pytest.approx(0.95)
        # the same label: the cut view is dropped and the whole view keeps the higher score
        same = Detections(boxes=left.boxes, scores=[0.95], labels=[1], class_scores=[[0, 0.95, 0.05, 0]])
        merged = merge_tiles([same, right], tiles, method=method)
        assert len(merged) == 1 and torch.allclose(merged.boxes[0], whole)
        assert float(merged.scores[0]) == pytest.approx(0.95)
        torch.testing.assert_close(merged.class_scores[0], torch.tensor([0.1, 0.95, 0.2, 0.1]))
    # a cut box the detector did not clip to its tile (x1 = 262 > 256) still counts as touching the edge
    unclipped = Detections(boxes=[[230, 100, 262, 140]], scores=[0.95], labels=[1])
    whole_view = Detections(boxes=right.boxes, scores=right.scores, labels=right.labels)
    assert len(merge_tiles([unclipped, whole_view], tiles)) == 1
    # without rule 1 the half cell (IoU 0.52, another label) stays where it was, beside the whole one
    kept = merge_tiles([left, right], tiles, truncation=None)
    assert len(kept) == 2 and not all(torch.allclose(b, whole) for b in kept.boxes)
    # with a same-label requirement, a differently labelled cut view is left where it was too
    kept = merge_tiles([left, right], tiles, truncation=TruncationRule(any_label=False))
    assert not all(torch.allclose(b, whole) for b in kept.boxes)


def test_box_at_the_outer_edge_of_the_region_is_not_truncated() -> None:
    # a cell cut by the slide border (x = 0) has no fuller view; it must stay even inside a larger box
    tiles = np.array([[0, 0, 256, 256], [192, 0, 256, 256]], dtype=float)
    left = Detections(boxes=[[0, 10, 20, 30], [200, 10, 250, 60]], scores=[0.9, 0.8], labels=[0, 0])
    right = Detections(boxes=[[200, 10, 250, 60]], scores=[0.7], labels=[0])
    merged = merge_tiles([left, right], tiles)
    assert len(merged) == 2
    assert torch.isclose(merged.scores, torch.tensor(0.9)).any()


def test_boxes_away_from_overlaps_are_left_alone() -> None:
    # two heavily overlapping boxes inside one tile's own area: the detector's NMS decided, merging does not
    tiles = np.array([[0, 0, 256, 256], [192, 0, 256, 256]], dtype=float)
    inside = Detections(boxes=[[10, 10, 50, 50], [12, 12, 52, 52]], scores=[0.9, 0.8], labels=[0, 0])
    merged = merge_tiles([inside, Detections.empty()], tiles)
    assert len(merged) == 2


def test_nms_is_class_aware_unless_asked_otherwise() -> None:
    tiles = np.array([[0, 0, 256, 256], [192, 0, 256, 256]], dtype=float)
    a = Detections(boxes=[[200, 10, 240, 50]], scores=[0.9], labels=[0])
    b = Detections(boxes=[[201, 10, 241, 50]], scores=[0.8], labels=[1])
    assert len(merge_tiles([a, b], tiles)) == 2
    assert len(merge_tiles([a, b], tiles, class_agnostic=True)) == 1
    assert len(merge_tiles([a, b], tiles, method="wbf", class_agnostic=True)) == 1


def test_wbf_averages_boxes_by_score_and_keeps_precision_far_from_the_origin() -> None:
    # a slide region 150k px from the origin: float32 normalisation would lose ~0.01 px here
    ox, oy = 150_000.0, 120_000.0
    tiles = np.array([[ox, oy, 256, 256], [ox + 192, oy, 256, 256]], dtype=float)
    a = Detections(
        boxes=[[ox + 200, oy + 10, ox + 240, oy + 50]], scores=[0.9], labels=[2], class_scores=[[0, 0.1, 0.9]]
    )
    b = Detections(
        boxes=[[ox + 202, oy + 11, ox + 242, oy + 51]],
        scores=[0.6],
        labels=[2],
        class_scores=[[0.2, 0.2, 0.6]],
    )
    merged = merge_tiles([a, b], tiles, method="wbf")
    assert len(merged) == 1
    expected = (0.9 * a.boxes[0].double() + 0.6 * b.boxes[0].double()) / 1.5
    assert torch.allclose(merged.boxes[0].double(), expected, atol=0.02)  # float32 step at 1.5e5 is 0.016
    assert abs(float(merged.scores[0]) - 0.75) < 1e-6  # one model: mean score of the cluster
    expected_cs = (0.9 * torch.tensor([0, 0.1, 0.9]) + 0.6 * torch.tensor([0.2, 0.2, 0.6])) / 1.5
    torch.testing.assert_close(merged.class_scores[0], expected_cs)


def test_empty_and_bad_inputs() -> None:
    tiles = np.array([[0, 0, 256, 256]], dtype=float)
    assert len(merge_tiles([Detections.empty()], tiles)) == 0
    with pytest.raises(ValueError, match="'nms', 'wbf'"):
        merge_tiles([Detections.empty()], tiles, method="soft")
    with pytest.raises(ValueError, match="2 per-tile detections for 1 tiles"):
        merge_tiles([Detections.empty(), Detections.empty()], tiles)
    with pytest.raises(ValueError, match=r"shape \(T, 4\)"):
        merge_tiles([Detections.empty()], np.zeros((1, 3)))
