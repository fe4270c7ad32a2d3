"""per_class_ap read from lvis-api's and pycocotools' precision arrays."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.evaluate import coco_eval, lvis_eval, per_class_ap, per_class_ap_from_eval
from cytolt.evaluate.lvis import run_lvis
from tests.evaluate._eval_cases import perfect_detections, random_lvis_case


@pytest.mark.parametrize("evaluator", ["lvis", "coco"])
def test_mean_of_classes_is_the_overall_ap(evaluator):
    gt, dets = random_lvis_case(0)
    per = per_class_ap(gt, dets, evaluator=evaluator)
    assert list(per) == [f"c{c}" for c in range(1, 6)]
    overall = (lvis_eval if evaluator == "lvis" else coco_eval)(gt, dets)["AP"]
    # each class with ground truth fills all T x R precision cells, so the overall mean is the class mean
    assert np.mean([v for v in per.values() if v > -1]) == pytest.approx(overall, abs=1e-12)
    assert len({round(v, 6) for v in per.values()}) > 1  # classes really differ


def test_groups_follow_frequencies():
    gt, dets = random_lvis_case(1)
    res = lvis_eval(gt, dets)
    per = per_class_ap(gt, dets)
    freq = {c["name"]: c["frequency"] for c in gt["categories"]}
    for group in "rcf":
        vals = [ap for name, ap in per.items() if freq[name] == group and ap > -1]
        assert (np.mean(vals) if vals else -1) == pytest.approx(res[f"AP{group}"], abs=1e-12)


def test_hand_case(lvis_gt):
    dets = [d for d in perfect_detections() if d["category_id"] != 2]  # no ascus detection at all
    per = per_class_ap(lvis_gt, dets)
    assert per == {"nilm": pytest.approx(1.0), "ascus": 0.0, "hsil": pytest.approx(1.0), "scc": -1.0}
    assert per_class_ap_from_eval(run_lvis(lvis_gt, dets)) == per


def test_errors(lvis_gt):
    with pytest.raises(ValueError, match="'lvis', 'coco'"):
        per_class_ap(lvis_gt, [], evaluator="voc")

    class NotRun:
        eval: dict = {}

    with pytest.raises(ValueError, match="accumulate"):
        per_class_ap_from_eval(NotRun())
