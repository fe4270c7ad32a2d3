"""Bootstrap intervals of LVIS AP: the re-weighted matching agrees with lvis-api, and intervals behave as known."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from cytolt.evaluate.bootstrap import (
    MatchTable,
    bootstrap,
    match_detections,
    paired_bootstrap,
    resample_weights,
    score_table,
)
from cytolt.evaluate.lvis import lvis_eval, run_lvis
from cytolt.evaluate.precision import per_class_ap_from_eval
from tests.evaluate._eval_cases import make_lvis_gt

CATS = [
    {"id": 1, "name": "head", "frequency": "f"},
    {"id": 2, "name": "mid", "frequency": "c"},
    {"id": 3, "name": "tail", "frequency": "r"},
    {"id": 4, "name": "tail2", "frequency": "r"},
]


def random_case(
    num_images: int, *, quality: float, seed: int, det_seed: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random LVIS ground truth (federated fields included) and a detector's results on it.

    ``quality`` in [0, 1]: how often a ground truth is found, how tight its box is and how far its score stands
    above the false positives'. ``det_seed`` draws other detections on the same ground truth.
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, num_images + 1):
        present = set()
        for _ in range(rng.integers(0, 4)):
            cat = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(15, 90, 2)
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h], "area": w * h}
            )
            present.add(cat)
        absent = [c for c in (1, 2, 3, 4) if c not in present]
        images.append(
            {
                "id": i,
                "width": 400,
                "height": 400,
                "neg_category_ids": [c for c in absent if rng.random() < 0.8],
                "not_exhaustive_category_ids": [c for c in sorted(present) if rng.random() < 0.15],
            }
        )
    gt = {"images": images, "annotations": anns, "categories": copy.deepcopy(CATS)}
    drng = np.random.default_rng(seed + 1000 if det_seed is None else det_seed)
    dets = []
    for ann in anns:
        for _ in range(1 + int(drng.random() < 0.2)):  # sometimes a duplicate detection
            if drng.random() > 0.4 + 0.6 * quality:
                continue
            jitter = drng.normal(0, 12 * (1.2 - quality), 4)
            x, y, w, h = ann["bbox"]
            box = [x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]), max(2.0, h + jitter[3])]
            cat = ann["category_id"] if drng.random() < 0.7 + 0.3 * quality else int(drng.integers(1, 5))
            score = float(np.clip(drng.normal(0.4 + 0.5 * quality, 0.15), 0.01, 0.999))
            dets.append({"image_id": ann["image_id"], "category_id": cat, "bbox": box, "score": score})
    for _ in range(num_images):  # false positives anywhere
        i = int(drng.integers(1, num_images + 1))
        x, y = drng.uniform(0, 300, 2)
        dets.append(
            {
                "image_id": i,
                "category_id": int(drng.integers(1, 5)),
                "bbox": [x, y, *drng.uniform(15, 90, 2)],
                "score": float(drng.uniform(0.01, 0.6)),
            }
        )
    return gt, dets


def lvis_with_per_class(gt: dict[str, Any], dets: list[dict[str, Any]]) -> dict[str, float]:
    """The reference: cytolt.evaluate.lvis's lvis-api run, with per-class AP."""
    ev = run_lvis(gt, dets, engine="reference")
    out = {key: float(value) for key, value in ev.get_results().items()}
    return out | {f"AP-{name}": ap for name, ap in per_class_ap_from_eval(ev).items()}


def expand(gt: dict[str, Any], dets: list[dict[str, Any]], weights: np.ndarray) -> tuple[dict, list]:
    """The resample as a data set of its own: image i copied weights[i] times under new ids."""
    images, anns, out_dets = [], [], []
    by_image: dict[int, list] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    dets_by_image: dict[int, list] = {}
    for det in dets:
        dets_by_image.setdefault(det["image_id"], []).append(det)
    ordered = sorted(gt["images"], key=lambda im: im["id"])
    for idx, count in enumerate(weights):
        for _ in range(int(count)):
            new_id = len(images) + 1
            images.append({**ordered[idx], "id": new_id})
            for ann in by_image.get(ordered[idx]["id"], []):
                anns.append({**ann, "id": len(anns) + 1, "image_id": new_id})
            out_dets += [{**d, "image_id": new_id} for d in dets_by_image.get(ordered[idx]["id"], [])]
    return {**gt, "images": images, "annotations": anns}, out_dets


KEYS = ("AP", "AP50", "APr", "APc", "APf", "AP-head", "AP-mid", "AP-tail", "AP-tail2")


def test_score_table_equals_lvis_api_on_the_whole_set() -> None:
    gt, dets = random_case(60, quality=0.6, seed=1)
    ours = score_table(match_detections(gt, dets))
    ref = lvis_with_per_class(gt, dets)
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_score_table_equals_lvis_api_on_the_shared_hand_built_case() -> None:
    gt = make_lvis_gt()
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 11, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [60, 10, 50, 50], "score": 0.8},  # a negative class: FP
        {"image_id": 2, "category_id": 3, "bbox": [200, 200, 31, 29], "score": 0.7},
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.95},  # not exhaustive: ignored
        {
            "image_id": 3,
            "category_id": 3,
            "bbox": [0, 0, 10, 10],
            "score": 0.99,
        },  # unknown class here: dropped
        {"image_id": 3, "category_id": 2, "bbox": [50, 50, 60, 60], "score": 0.5},
    ]
    ours = score_table(match_detections(gt, dets))
    ref = lvis_with_per_class(gt, dets)
    for key in ("AP", "AP50", "APr", "APc", "APf", "AP-nilm", "AP-ascus", "AP-hsil", "AP-scc"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_per_image_limit_follows_lvis_results() -> None:
    gt, dets = random_case(30, quality=0.5, seed=2)
    ours = score_table(match_detections(gt, dets, max_dets=2))
    ref = lvis_eval(gt, dets, max_dets=2)
    for key in ("AP", "AP50", "APr", "APc", "APf"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_a_resample_scores_like_lvis_api_on_the_duplicated_images() -> None:
    gt, dets = random_case(40, quality=0.6, seed=3)
    table = match_detections(gt, dets)
    for weights in resample_weights(table.num_images, 3, seed=7):
        assert weights.max() > 1  # duplicates are what the re-weighting must get right
        ours = score_table(table, weights)
        ref = lvis_with_per_class(*expand(gt, dets, weights))
        for key in KEYS:
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_arrays_round_trip() -> None:
    gt, dets = random_case(25, quality=0.5, seed=4)
    table = match_detections(gt, dets)
    back = MatchTable.from_arrays(table.to_arrays())
    w = resample_weights(table.num_images, 1, seed=0)[0]
    assert score_table(back, w) == score_table(table, w)


def test_identical_detections_differ_by_exactly_zero() -> None:
    gt, dets = random_case(50, quality=0.6, seed=5)
    table = match_detections(gt, dets)
    diff = paired_bootstrap(table, match_detections(gt, copy.deepcopy(dets)), n_resamples=200)
    for key in KEYS:
        assert (diff[key].value, diff[key].low, diff[key].high) == (0.0, 0.0, 0.0), key
        assert not diff[key].excludes_zero


def test_a_clearly_better_detector_has_a_difference_interval_above_zero() -> None:
    gt, weak = random_case(150, quality=0.2, seed=6)
    _, strong = random_case(150, quality=0.9, seed=6, det_seed=99)
    diff = paired_bootstrap(match_detections(gt, weak), match_detections(gt, strong), n_resamples=300)
    assert diff["AP"].value > 0
    assert diff["AP"].low > 0 and diff["AP"].excludes_zero
    assert diff["AP"].low <= diff["AP"].value <= diff["AP"].high


def test_interval_width_shrinks_with_more_images() -> None:
    widths = []
    for n in (40, 400):
        gt, dets = random_case(n, quality=0.5, seed=8)
        ci = bootstrap(match_detections(gt, dets), n_resamples=300, seed=1)["AP"]
        assert ci.low <= ci.value <= ci.high
        widths.append(ci.high - ci.low)
    assert widths[1] < 0.6 * widths[0]  # about 1 / sqrt(10) expected


def test_bootstrap_is_seeded_and_skips_undefined_resamples() -> None:
    gt, dets = random_case(30, quality=0.5, seed=9)
    table = match_detections(gt, dets)
    a = bootstrap(table, n_resamples=50, seed=3)
    assert a == bootstrap(table, n_resamples=50, seed=3)
    assert a != bootstrap(table, n_resamples=50, seed=4)
    assert all(1 <= a[k].resamples <= 50 for k in KEYS)


def test_paired_bootstrap_refuses_different_ground_truths() -> None:
    gt_a, dets_a = random_case(20, quality=0.5, seed=10)
    gt_b, dets_b = random_case(21, quality=0.5, seed=11)
    with pytest.raises(ValueError, match="same ground truth"):
        paired_bootstrap(match_detections(gt_a, dets_a), match_detections(gt_b, dets_b), n_resamples=5)


def test_bad_arguments() -> None:
    gt, dets = random_case(10, quality=0.5, seed=12)
    table = match_detections(gt, dets)
    with pytest.raises(ValueError, match="level"):
        bootstrap(table, level=1.5)
    with pytest.raises(ValueError, match="weights"):
        score_table(table, np.ones(3))


def test_interval_is_recentred_on_a_biased_bootstrap_distribution() -> None:
    from cytolt.evaluate.bootstrap import percentile_interval

    rng = np.random.default_rng(0)
    samples = 0.5 + 0.7 * 0.01 + rng.normal(0, 0.01, 4000)  # resamples biased up by 0.7 sd, as AP's are
    iv = percentile_interval(0.5, samples)
    assert np.percentile(samples, 2.5) > 0.487  # the plain interval nearly misses the estimate
    # a shift b = 0.007 of the resamples moves the interval to value - b -+ 1.96 sd
    assert iv.low == pytest.approx(0.5 - 0.007 - 0.0196, abs=0.002)
    assert iv.high == pytest.approx(0.5 - 0.007 + 0.0196, abs=0.002)
    unbiased = percentile_interval(0.0, rng.normal(0, 1, 4000))
    assert unbiased.low == pytest.approx(-1.96, abs=0.1) and unbiased.high == pytest.approx(1.96, abs=0.1)
