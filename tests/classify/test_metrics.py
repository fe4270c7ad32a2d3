"""Classification metrics on hand-made cases: balanced accuracy, shot groups, ECE, NLL, confusion, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cytolt.classify.metrics import (
    bootstrap_report,
    classification_report,
    expected_calibration_error,
    format_report,
    shot_groups,
    to_probabilities,
)


def _one_hot(pred: list[int], k: int) -> np.ndarray:
    return np.eye(k)[pred]


def test_a_constant_predictor_has_balanced_accuracy_one_over_k() -> None:
    labels = [0] * 7 + [1, 1, 2, 3]
    report = classification_report(_one_hot([0] * 11, 4), labels, [100, 10, 5, 1])
    assert report["balanced_accuracy"] == pytest.approx(1 / 4)
    assert report["accuracy"] == pytest.approx(7 / 11)
    assert report["per_class_recall"] == {"class_0": 1.0, "class_1": 0.0, "class_2": 0.0, "class_3": 0.0}
    assert report["confusion"] == [[7, 0, 0, 0], [2, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]


def test_shot_groups_follow_the_training_counts_with_the_oltr_thresholds() -> None:
    # many: > 100; few: < 20; medium: 20..100 (both ends included)
    assert shot_groups([500, 101, 100, 20, 19, 0]) == ["many", "many", "medium", "medium", "few", "few"]
    assert shot_groups([10, 50], many=40, few=11) == ["few", "many"]
    with pytest.raises(ValueError, match="few"):
        shot_groups([1], many=10, few=30)


def test_group_accuracy_is_the_mean_recall_of_its_classes() -> None:
    # per-class recall: c0 1, c1 0, c2 1/2, c3 1, c4 0, c5 1
    labels = [0, 1, 2, 2, 3, 4, 5]
    pred = [0, 0, 2, 0, 3, 5, 5]
    names = [f"c{i}" for i in range(6)]
    report = classification_report(_one_hot(pred, 6), labels, [500, 101, 100, 20, 19, 0], class_names=names)
    assert report["many_shot"] == pytest.approx((1 + 0) / 2)
    assert report["medium_shot"] == pytest.approx((0.5 + 1) / 2)
    assert report["few_shot"] == pytest.approx((0 + 1) / 2)
    assert report["balanced_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1 + 0 + 1) / 6)
    assert report["groups"] == {"many": ["c0", "c1"], "medium": ["c2", "c3"], "few": ["c4", "c5"]}
    assert report["thresholds"] == {"many": 100, "few": 20}
    json.dumps(report)  # plain Python types only: it goes into classifier.json


def test_an_empty_group_and_an_unseen_class_are_none_not_zero() -> None:
    # every class is many-shot; class 2 has no evaluated crop
    report = classification_report(_one_hot([0, 1, 1], 3), [0, 1, 0], [200, 300, 400])
    assert report["medium_shot"] is None and report["few_shot"] is None
    assert report["per_class_recall"]["class_2"] is None
    assert report["many_shot"] == pytest.approx((0.5 + 1.0) / 2)  # class 2 left out of the mean
    assert report["balanced_accuracy"] == pytest.approx(0.75)
    empty = classification_report(np.zeros((0, 3)), [], [1, 2, 3])
    assert empty["accuracy"] is None and empty["balanced_accuracy"] is None and empty["ece"] is None


def test_ece_of_a_perfectly_calibrated_toy_is_zero() -> None:
    # four crops at confidence 0.75 of which three are right; two at 1.0, both right
    probs = np.array([[0.75, 0.25]] * 4 + [[1.0, 0.0]] * 2)
    labels = [0, 0, 0, 1, 0, 0]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_by_hand() -> None:
    # 10 bins. A, B at confidence 0.85 (bin (0.8, 0.9]), one right: |0.5 - 0.85| = 0.35, weight 2/3.
    # C at 0.65 (bin (0.6, 0.7]), right: |1 - 0.65| = 0.35, weight 1/3. ECE = 0.35.
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65]])
    assert expected_calibration_error(probs, [0, 1, 1], n_bins=10) == pytest.approx(0.35)
    # one bin: |accuracy - mean confidence| = |2/3 - 0.7833|
    assert expected_calibration_error(probs, [0, 1, 1], n_bins=1) == pytest.approx(abs(2 / 3 - 2.35 / 3))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(probs, [0, 1, 1], n_bins=0)


def test_logits_and_probabilities_give_the_same_report_and_the_nll_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    probs = torch.softmax(logits, dim=1)
    a = classification_report(logits, labels, [1, 1, 1])
    b = classification_report(probs.numpy(), labels.numpy(), [1, 1, 1])
    assert a["accuracy"] == pytest.approx(b["accuracy"]) and a["nll"] == pytest.approx(b["nll"])
    assert a["ece"] == pytest.approx(b["ece"])
    expected = -float(torch.log(probs[[0, 1, 2], labels]).mean())
    assert a["nll"] == pytest.approx(expected)
    # p(true) = 1/2 and 1/4: NLL = (ln 2 + ln 4) / 2
    half = classification_report(np.array([[0.5, 0.5], [0.75, 0.25]]), [0, 1], [1, 1])
    assert half["nll"] == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert to_probabilities(np.array([[0.2, 0.8]])).tolist() == [[0.2, 0.8]]  # already probabilities
    assert to_probabilities(np.array([[0.2, 0.8]]), logits=True)[0, 1] == pytest.approx(
        1 / (1 + math.exp(-0.6))
    )


@pytest.mark.parametrize(
    ("scores", "labels", "counts", "match"),
    [
        (np.zeros((2, 3)), [0], [1, 1, 1], "1 labels for 2 rows"),
        (np.zeros((2, 3)), [0, 3], [1, 1, 1], r"0\.\.2"),
        (np.zeros(3), [0], [1, 1, 1], r"\(N, K\)"),
        (np.zeros((1, 3)), [0.5], [1, 1, 1], "integers"),
        (np.zeros((1, 3)), [0], [1, 1], "2 train_counts for 3 classes"),
        (np.full((1, 2), np.nan), [0], [1, 1], "finite"),
    ],
)
def test_bad_inputs_are_refused(scores, labels, counts, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_report(scores, labels, counts)


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    pred = np.where(rng.random(60) < 0.7, labels, (labels + 1) % 3)
    probs = _one_hot(pred.tolist(), 3)
    out = bootstrap_report(probs, labels, [300, 50, 5], n_resamples=200, seed=1)
    report = classification_report(probs, labels, [300, 50, 5])
    for name, key in [
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced_accuracy"),
        ("few_shot", "few_shot"),
    ]:
        iv = out[name]
        assert iv["value"] == pytest.approx(report[key])
        assert iv["low"] <= iv["value"] <= iv["high"] and iv["high"] - iv["low"] > 0
        assert iv["resamples"] == 200
    assert out == bootstrap_report(probs, labels, [300, 50, 5], n_resamples=200, seed=1)
    perfect = bootstrap_report(_one_hot(labels.tolist(), 3), labels, [300, 300, 300], n_resamples=50)
    assert perfect["accuracy"]["low"] == perfect["accuracy"]["high"] == 1.0
    assert perfect["few_shot"] is None and perfect["medium_shot"] is None


def test_format_report_lists_the_summary_and_every_class() -> None:
    report = classification_report(
        _one_hot([0, 1, 1], 3), [0, 1, 2], [200, 50, 3], class_names=["aa", "bb", "cc"]
    )
    text = format_report(report)
    assert "accuracy 0.667" in text and "balanced 0.667" in text and "many > 100, few < 20" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert rows["aa"][1:] == ["many", "200", "1", "1.000"]
    assert rows["cc"][1:] == ["few", "3", "1", "0.000"]
    assert len(format_report(report, per_class=False).splitlines()) == 2
