"""confusion_matrix on hand-made cases whose counts are worked out in comments, and its plot."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.evaluate import category_names, confusion_matrix, plot_confusion
from cytolt.evaluate.confusion import box_iou_xywh
from tests.evaluate._eval_cases import perfect_detections


def two_class_gt() -> dict:
    # classes A (id 1) and B (id 2); image 1: A at (0,0), B at (50,50), A at (100,100), all 10 x 10
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [100, 100, 10, 10], "area": 100},
        # a crowd region is never matched
        {"id": 4, "image_id": 1, "category_id": 2, "bbox": [300, 300, 50, 50], "area": 2500, "iscrowd": 1},
    ]
    cats = [{"id": 2, "name": "B"}, {"id": 1, "name": "A"}]  # unsorted on purpose: the axis follows the ids
    return {"images": [{"id": 1}, {"id": 2}], "annotations": anns, "categories": cats}


def det(cat, box, score, image_id=1):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


def test_hand_case():
    dets = [
        det(1, [0, 0, 10, 10], 0.9),  # A on A(0,0): correct                      -> [A, A]
        det(2, [100, 101, 10, 10], 0.8),  # B on A(100,100), IoU 0.82: confusion  -> [A, B]
        det(1, [200, 200, 10, 10], 0.7),  # A on nothing                          -> [bg, A]
        det(2, [0, 1, 10, 10], 0.6),  # B duplicate on A(0,0), already taken      -> [bg, B]
        det(2, [50, 50, 10, 10], 0.1),  # below score_thr: dropped, so B is missed -> [B, missed]
        det(1, [5, 5, 10, 10], 0.5, image_id=2),  # image 2 has no ground truth   -> [bg, A]
    ]
    m = confusion_matrix(two_class_gt(), dets, iou_thr=0.5, score_thr=0.3)
    #                     pred A  pred B  missed
    expected = np.array([[1, 1, 0],  # gt A
                         [0, 0, 1],  # gt B
                         [2, 1, 0]])  # background  # fmt: skip
    np.testing.assert_array_equal(m, expected)
    assert category_names(two_class_gt()) == ["A", "B"]
    # every ground truth lands once in its row; every kept detection once in its column
    assert m[:2].sum() == 3
    assert m[:, :2].sum() == 5


def test_same_class_match_wins_over_higher_iou_confusion():
    gt = two_class_gt()
    dets = [
        det(2, [100, 100, 10, 10], 0.9),  # B exactly on A(100,100), IoU 1, higher score
        det(1, [102, 100, 10, 10], 0.5),  # A on the same object, IoU 0.67
    ]
    m = confusion_matrix(gt, dets)
    assert m[0, 0] == 1  # A's own detection is the match (COCO's same-class rule)
    assert m[2, 1] == 1  # the B detection is left as a false positive
    assert m[0, 1] == 0
    assert m[0, 2] == 1 and m[1, 2] == 1  # A(0,0) and B(50,50) missed


def test_iou_and_score_thresholds_move_counts():
    gt = two_class_gt()
    dets = [det(1, [0, 4, 10, 10], 0.4)]  # IoU with A(0,0) = 60 / 140 = 0.43
    assert confusion_matrix(gt, dets, iou_thr=0.4)[0, 0] == 1
    assert confusion_matrix(gt, dets, iou_thr=0.5)[0, 0] == 0
    assert confusion_matrix(gt, dets, iou_thr=0.4, score_thr=0.5).sum() == 3  # only the 3 misses remain


def test_perfect_detections_are_diagonal(lvis_gt):
    m = confusion_matrix(lvis_gt, perfect_detections(), score_thr=0.0)
    np.testing.assert_array_equal(m, np.diag([3, 2, 1, 0, 0]))


def test_box_iou_xywh():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou_xywh(a, b), [[50 / 150, 0.0, 1.0]])
    assert box_iou_xywh(np.zeros((0, 4)), b).shape == (0, 3)


def test_plot_confusion(tmp_path):
    m = np.array([[5, 1, 2], [0, 3, 1], [4, 0, 0]])
    for normalize in (False, True):
        path = tmp_path / f"cm_{normalize}.png"
        fig = plot_confusion(m, ["A", "B"], path, normalize=normalize, title="test")
        assert path.stat().st_size > 1000
        texts = {t.get_text() for t in fig.axes[0].texts}
        assert {"5", "4", "3"} <= texts  # cells print counts
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["A", "B", "missed"]
    with pytest.raises(ValueError, match="\\(3, 3\\) for 2 class names"):
        plot_confusion(np.zeros((2, 2)), ["A", "B"])


def test_bad_iou_thr():
    with pytest.raises(ValueError, match="iou_thr"):
        confusion_matrix(two_class_gt(), [], iou_thr=0.0)
