"""Tests of cytolt.screen.cells: boxes of different classes on one cell become one cell with both classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolt.detect import Detections
from cytolt.screen.cells import class_probabilities, group_cells


def test_two_classes_on_one_cell_are_one_cell_with_the_max_of_each_class() -> None:
    dets = Detections(
        boxes=[[0, 0, 40, 40], [1, 1, 41, 40], [100, 100, 130, 130], [0, 0, 40, 40]],
        scores=[0.6, 0.8, 0.9, 0.3],
        labels=[0, 2, 1, 0],
    )
    cells = group_cells(dets, 3)
    # boxes 0 and 1 (IoU 0.93, labels 0 and 2) are one cell; box 3 has label 0 like box 0: the NMS kept both
    # as two cells of one class, so grouping leaves it alone unless another class joins it, which box 1 does
    assert len(cells) == 2
    assert torch.allclose(cells.class_scores[0], torch.tensor([0.0, 0.9, 0.0]))
    assert torch.allclose(cells.class_scores[1], torch.tensor([0.6, 0.0, 0.8]))
    assert cells.labels.tolist() == [1, 2] and torch.allclose(cells.scores, torch.tensor([0.9, 0.8]))
    assert torch.allclose(cells.boxes[1], torch.tensor([1.0, 1, 41, 40]))  # the best member's box


def test_neighbouring_cells_of_different_classes_stay_apart() -> None:
    # IoU 0.6: two overlapping cells, as cytolt.synth draws them (planted cells overlap up to IoU 0.67)
    dets = Detections(boxes=[[0, 0, 40, 40], [10, 0, 50, 40]], scores=[0.9, 0.8], labels=[0, 1])
    assert len(group_cells(dets, 2)) == 2
    assert len(group_cells(dets, 2, min_iou=0.5)) == 1


def test_class_scores_are_kept_and_inputs_checked() -> None:
    dets = Detections(boxes=[[0, 0, 4, 4]], scores=[0.7], labels=[1], class_scores=[[0.2, 0.7]])
    assert np.allclose(class_probabilities(dets, 2), [[0.2, 0.7]])
    assert len(group_cells(Detections.empty(), 3)) == 0
    with pytest.raises(ValueError, match="3 classes"):
        class_probabilities(dets, 3)
    with pytest.raises(ValueError, match="min_iou"):
        group_cells(dets, 2, min_iou=0)
