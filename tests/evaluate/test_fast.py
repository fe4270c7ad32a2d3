"""engine="fast" (faster-coco-eval, cytolt/evaluate/_fast.py) against lvis-api and pycocotools, rule by rule."""

from __future__ import annotations

import contextlib
import copy
import io
import logging

import numpy as np
import pytest

from cytolt._compat import patch_numpy_for_lvis
from cytolt.evaluate import LVISEvaluator, coco_eval, fixed_ap, lvis_eval, per_class_ap
from cytolt.evaluate._fast import cap_per_image, run_fast
from tests.evaluate._eval_cases import (
    imperfect_detections,
    make_lvis_gt,
    perfect_detections,
    random_lvis_case,
    with_box_masks,
)

# lvis 0.5.3 calls the deprecated Logger.warn in the reference runs below
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

TOL = 1e-6


def lvis_api(gt: dict, dets: list[dict], *, iou_type: str = "bbox", max_dets: int = 300) -> dict[str, float]:
    """lvis-api 0.5.3 run directly on the same data (the reference)."""
    patch_numpy_for_lvis()
    from lvis import LVIS, LVISEval, LVISResults

    class InMemory(LVIS):
        def __init__(self, dataset: dict) -> None:
            self.logger = logging.getLogger("lvis")
            self.dataset = dataset
            self._create_index()

    lvis_gt = InMemory(copy.deepcopy(gt))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(dets), max_dets=max_dets), iou_type=iou_type)
    ev.params.max_dets = max_dets
    ev.run()
    return {k: float(v) for k, v in ev.get_results().items()}


def pycocotools_stats(gt: dict, dets: list[dict], *, iou_type: str = "bbox") -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def assert_same(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert list(ours) == list(ref)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=TOL), key


def flooded_image(n_extra: int = 340) -> list[dict]:
    """Image 1 of the hand-built set with ``n_extra`` false positives spread over its classes.

    The false positives are scattered 8-px boxes (IoU 0 with every object) scored between the true hits, so the
    300-per-image cap cuts into true hits. A third of them are hsil or scc, which image 1 does not verify
    (hsil is a verified negative there, scc is unknown): scc ones are dropped by the federated rule *after*
    the cap has counted them (lvis-api's order), hsil ones count as false positives.
    """
    rng = np.random.default_rng(7)
    dets = [d for d in perfect_detections() if d["image_id"] == 1]
    for d, score in zip(dets, (0.95, 0.45, 0.05), strict=True):  # hits high, middle, and below the cut
        d["score"] = score
    for i in range(n_extra):
        x, y = 300 + (i % 10) * 9, (i // 10) * 9
        dets.append(
            {
                "image_id": 1,
                "category_id": int(rng.choice([1, 2, 3, 4])),
                "bbox": [float(x), float(y), 8.0, 8.0],
                "score": float(rng.uniform(0.1, 0.9)),
            }
        )
    # plus the perfect detections of the other images, untouched by the cap
    return dets + [d for d in perfect_detections() if d["image_id"] != 1]


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_equal_lvis_api(seed):
    gt, dets = random_lvis_case(seed, n_images=12)
    ref = lvis_api(gt, dets)
    assert_same(lvis_eval(gt, dets, engine="fast"), ref)
    assert_same(lvis_eval(gt, dets, engine="reference"), ref)
    assert 0 < ref["AP"] < 1


def test_segm_equals_lvis_api(lvis_gt):
    dets = with_box_masks(imperfect_detections())
    assert_same(lvis_eval(lvis_gt, dets, iou_type="segm"), lvis_api(lvis_gt, dets, iou_type="segm"))


def test_unverified_class_is_ignored_as_lvis_api_does(lvis_gt):
    base = imperfect_detections()
    # hsil in image 3: neither annotated nor a verified negative there -> dropped
    unverified = {"image_id": 3, "category_id": 3, "bbox": [5.0, 5.0, 30.0, 30.0], "score": 0.99}
    dets = [*base, unverified]
    ours = lvis_eval(lvis_gt, dets)
    assert_same(ours, lvis_api(lvis_gt, dets))
    assert_same(ours, lvis_eval(lvis_gt, base))
    # in image 1 hsil is a verified negative: the same detection is a false positive, in both engines
    hurt = [*base, {**unverified, "image_id": 1}]
    assert_same(lvis_eval(lvis_gt, hurt), lvis_api(lvis_gt, hurt))
    assert lvis_eval(lvis_gt, hurt)["APr"] == pytest.approx(0.5)


def test_not_exhaustive_unmatched_detection_is_ignored_as_lvis_api_does(lvis_gt):
    base = imperfect_detections()
    extra = {"image_id": 3, "category_id": 2, "bbox": [300.0, 10.0, 40.0, 40.0], "score": 0.99}
    dets = [*base, extra]
    ours = lvis_eval(lvis_gt, dets)
    assert_same(ours, lvis_api(lvis_gt, dets))
    assert_same(ours, lvis_eval(lvis_gt, base))
    hurt = [*base, {**extra, "image_id": 1}]  # ascus is exhaustive in image 1: a false positive
    assert_same(lvis_eval(lvis_gt, hurt), lvis_api(lvis_gt, hurt))
    assert lvis_eval(lvis_gt, hurt)["APc"] < ours["APc"]


@pytest.mark.parametrize("max_dets", [300, 50])
def test_more_than_max_dets_per_image_capped_the_lvis_way(lvis_gt, max_dets):
    dets = flooded_image()
    ref = lvis_api(lvis_gt, dets, max_dets=max_dets)
    assert_same(lvis_eval(lvis_gt, dets, max_dets=max_dets), ref)
    # the cap matters here: without it the lowest-scored hit would still be found
    assert ref[f"AR@{max_dets}"] < lvis_api(lvis_gt, dets, max_dets=-1)["AR@-1"]
    # and faster-coco-eval's own maxDets (per image *and class*) is not the LVIS rule: it keeps too much
    native = _native_lvis_style(lvis_gt, dets, max_dets)
    assert abs(native - ref["AP"]) > 1e-3


def _native_lvis_style(gt: dict, dets: list[dict], max_dets: int) -> float:
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(copy.deepcopy(gt))
    ev = COCOeval_faster(
        coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iouType="bbox", lvis_style=True, print_function=print
    )
    ev.params.maxDets = [max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats_as_dict["AP_all"])


def test_cap_per_image_selects_what_lvis_api_selects():
    patch_numpy_for_lvis()
    from lvis import LVISResults

    rng = np.random.default_rng(3)
    # three images, one over the cap, many tied scores
    dets = [
        {"id": i, "image_id": int(rng.integers(1, 4)), "score": float(rng.integers(0, 5)) / 4}
        for i in range(60)
    ]
    ref = LVISResults.limit_dets_per_image(None, copy.deepcopy(dets), 25)
    assert [d["id"] for d in cap_per_image(dets, 25)] == [d["id"] for d in ref]
    assert len(cap_per_image(dets, -1)) == 60


def test_fixed_ap_equals_reference_engine(lvis_gt):
    dets = flooded_image()
    for case_gt, case_dets in [(lvis_gt, dets), random_lvis_case(5, n_images=10)]:
        for k in (10_000, 2):
            ref = fixed_ap(case_gt, case_dets, dets_per_class=k, engine="reference")
            assert_same(fixed_ap(case_gt, case_dets, dets_per_class=k), ref)
    # no per-image cap: the hit the 300 cap loses is found
    assert fixed_ap(lvis_gt, dets)["AR@10000/cat"] > lvis_eval(lvis_gt, dets)["AR@300"]


@pytest.mark.parametrize("evaluator", ["lvis", "coco"])
def test_per_class_ap_equals_reference_engine(evaluator):
    gt, dets = random_lvis_case(2, n_images=12)
    ref = per_class_ap(gt, dets, evaluator=evaluator, engine="reference")
    ours = per_class_ap(gt, dets, evaluator=evaluator)
    assert list(ours) == list(ref)
    assert list(ours.values()) == pytest.approx(list(ref.values()), abs=TOL)
    assert len({round(v, 6) for v in ref.values()}) > 1


def test_evaluator_engines_agree():
    gt, dets = random_lvis_case(4)
    out = {}
    for engine in ("fast", "reference"):
        ev = LVISEvaluator(gt, per_class=True, engine=engine)
        for img in gt["images"]:
            mine = [d for d in dets if d["image_id"] == img["id"]]
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]).reshape(
                -1, 4
            )
            ev.process(img["id"], boxes, [d["score"] for d in mine], [d["category_id"] - 1 for d in mine])
        out[engine] = ev.evaluate()
    assert_same(out["fast"], out["reference"])
    assert "AP-c1" in out["fast"]


def test_ignore_flag_keeps_lvis_api_rule(lvis_gt):
    # lvis-api honours a ground-truth "ignore"; faster-coco-eval overwrites it, so the fast engine defers
    lvis_gt["annotations"][1]["ignore"] = 1
    dets = imperfect_detections()
    ref = lvis_api(lvis_gt, dets)
    assert_same(lvis_eval(lvis_gt, dets), ref)
    assert ref["APf"] != pytest.approx(lvis_api(make_lvis_gt(), dets)["APf"])


def test_empty_and_bad_engine(lvis_gt):
    assert_same(lvis_eval(lvis_gt, []), lvis_eval(lvis_gt, [], engine="reference"))
    with pytest.raises(ValueError, match="'fast', 'reference'"):
        lvis_eval(lvis_gt, [], engine="turbo")
    with pytest.raises(ValueError, match="'fast', 'reference'"):
        coco_eval(lvis_gt, [], engine="turbo")


def crowded_coco_case() -> tuple[dict, list[dict]]:
    """COCO ground truth with a crowd region and more than 100 detections in one image and class."""
    gt, dets = random_lvis_case(1, n_images=10)
    for ann in gt["annotations"]:
        ann["iscrowd"] = 0
    gt["annotations"][0]["iscrowd"] = 1
    rng = np.random.default_rng(0)
    for i in range(130):
        dets.append(
            {
                "image_id": 2,
                "category_id": 3,
                "bbox": [float(x) for x in [*rng.uniform(0, 300, 2), *rng.uniform(8, 100, 2)]],
                "score": float(rng.random()) * 0.5 + 0.001 * i,
            }
        )
    return gt, dets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_equals_pycocotools(iou_type):
    gt, dets = crowded_coco_case()
    if iou_type == "segm":
        for ann in gt["annotations"]:
            x, y, w, h = ann["bbox"]
            ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        dets = with_box_masks(dets, size=450)
    ref = pycocotools_stats(gt, dets, iou_type=iou_type)
    for engine in ("fast", "reference"):
        ours = coco_eval(gt, dets, iou_type=iou_type, engine=engine)
        assert list(ours.values()) == pytest.approx(ref, abs=TOL), engine
    assert 0 < ref[0] < 1


def test_run_fast_leaves_lvis_rules_out_of_coco(lvis_gt):
    # COCO scoring of LVIS ground truth: the unverified hsil detection is a false positive, not dropped
    unverified = {"image_id": 3, "category_id": 3, "bbox": [5.0, 5.0, 30.0, 30.0], "score": 0.99}
    for ann in lvis_gt["annotations"]:
        ann["iscrowd"] = 0
    ev = run_fast(lvis_gt, [*perfect_detections(), unverified], iou_type="bbox")
    assert ev.stats[0] < 1.0 and not ev.lvis_style
