"""fixed_ap (Dave et al. 2021) against lvis-api with the same selection, and a case where the cap matters."""

from __future__ import annotations

import copy

import pytest

from cytolt._compat import patch_numpy_for_lvis
from cytolt.evaluate import fixed_ap, lvis_eval, top_k_per_class
from tests.evaluate._eval_cases import perfect_detections, random_lvis_case, write_json

# lvis 0.5.3 calls the deprecated Logger.warn in the reference runs below
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def flooded_detections() -> list[dict]:
    """Perfect detections, the hsil one scored lowest, plus 299 nilm false positives in image 2.

    Image 2 then holds 301 detections: the 300-per-image cap drops the lowest, the hsil hit.
    The false positives score 0.2-0.8, below every true nilm hit (0.86-0.89), so nilm keeps AP 1.
    """
    dets = perfect_detections()
    for d in dets:
        if d["category_id"] == 3:
            d["score"] = 0.01
    for i in range(299):
        x, y = 250 + (i % 15) * 9, 5 + (i // 15) * 9  # 15 x 20 grid right of the objects: IoU 0 with all
        dets.append({"image_id": 2, "category_id": 1, "bbox": [x, y, 8.0, 8.0], "score": 0.2 + 0.6 * i / 299})
    return dets


def test_cap_changes_ap_and_fixed_ap_keeps_the_detection(lvis_gt):
    dets = flooded_detections()
    capped = lvis_eval(lvis_gt, dets)
    fixed = fixed_ap(lvis_gt, dets)
    # capped: hsil (the only rare class with ground truth) is never seen -> APr 0;
    # AP = mean over nilm 1, ascus 1, hsil 0 = 2/3
    assert capped["APr"] == 0.0
    assert capped["AP"] == pytest.approx(2 / 3)
    # fixed AP keeps all 301 detections of image 2: every class is perfect
    assert fixed["APr"] == pytest.approx(1.0)
    assert fixed["AP"] == pytest.approx(1.0)
    assert "AR@10000/cat" in fixed and "AR@300" not in fixed
    # with fewer than 10,000 detections per class, fixed AP is lvis-api without a per-image cap
    uncapped = lvis_eval(lvis_gt, dets, max_dets=-1)
    assert list(fixed.values()) == pytest.approx(list(uncapped.values()))


def lvis_api_uncapped(gt_path, dets):
    patch_numpy_for_lvis()
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(str(gt_path))
    ev = LVISEval(gt, LVISResults(gt, copy.deepcopy(dets), max_dets=-1), iou_type="bbox")
    ev.run()
    return list(ev.get_results().values())


@pytest.mark.parametrize("k", [1, 3])
def test_per_class_limit_equals_lvis_api_on_the_selection(tmp_path, k):
    gt, dets = random_lvis_case(5, n_images=10)
    ours = fixed_ap(gt, dets, dets_per_class=k)
    ref = lvis_api_uncapped(write_json(tmp_path / "gt.json", gt), top_k_per_class(dets, k))
    assert list(ours.values()) == pytest.approx(ref, abs=1e-12)
    assert f"AR@{k}/cat" in ours
    # a class limit this small loses recall compared with the default
    assert ours[f"AR@{k}/cat"] < fixed_ap(gt, dets)["AR@10000/cat"]


def test_top_k_per_class_keeps_highest_and_is_stable():
    dets = [
        {"id": "a", "category_id": 1, "score": 0.1},
        {"id": "b", "category_id": 1, "score": 0.5},
        {"id": "c", "category_id": 1, "score": 0.5},
        {"id": "d", "category_id": 1, "score": 0.9},
        {"id": "e", "category_id": 2, "score": 0.2},
        {"id": "f", "category_id": 2, "score": 0.3},
    ]
    kept = top_k_per_class(dets, 2)
    assert sorted(d["id"] for d in kept) == ["b", "d", "e", "f"]  # "b" beats tied "c" by input order
    assert dets[0] is not kept[0] and len(dets) == 6
    with pytest.raises(ValueError, match="positive int"):
        top_k_per_class(dets, 0)
