"""Screening-study figures (cytolt/evaluate/screening.py) on hand-made cohorts; expected values worked out in
the comments."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.bethesda import UNSATISFACTORY
from cytolt.evaluate.screening import (
    CUTOFFS,
    at_cutoffs,
    confusion,
    counted_call,
    gallery_hit_rate,
    proportion,
    roc_auc_with_ci,
    sensitivity_specificity,
    triage_fraction,
    wilson_interval,
)

Z2 = 1.959963984540054**2  # z^2 for 95 %, 3.8415


def test_wilson_interval_hand_values():
    # 5/10: centre (0.5 + Z2/20) / (1 + Z2/10) = 0.5; half = 1.96 / 1.38415 * sqrt(0.025 + Z2/400) = 0.26341
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    # 1/3: centre (1/3 + Z2/6) / (1 + Z2/3) = 0.42691; half = 1.96 / 2.28049 * sqrt(2/27 + Z2/36) = 0.36543
    assert wilson_interval(1, 3) == pytest.approx((0.061492, 0.792340), abs=1e-6)
    # 95/100: centre (0.95 + Z2/200) / (1 + Z2/100) = 0.93335;
    # half = 1.96 / 1.03841 * sqrt(0.000475 + Z2/40000) = 0.04510
    assert wilson_interval(95, 100) == pytest.approx((0.888250, 0.978456), abs=1e-6)


def test_wilson_interval_edges():
    # 0/10: p = 0, centre = half = (Z2/20) / (1 + Z2/10) = 0.13877, so (0, 2 * 0.13877); 10/10 mirrors it
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))
    assert wilson_interval(10, 10) == (pytest.approx(0.722467, abs=1e-6), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low90, high90 = wilson_interval(5, 10, confidence=0.9)
    assert 0.236593 < low90 < 0.5 < high90 < 0.763407  # a lower confidence gives a narrower interval
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=95)


def test_proportion_record():
    assert proportion(1, 4) == {"k": 1, "n": 4, "value": 0.25, "interval": list(wilson_interval(1, 4))}
    assert proportion(0, 0) == {"k": 0, "n": 0, "value": None, "interval": [0.0, 1.0]}


def test_sensitivity_specificity_counts():
    # truth  T T T F F
    # called T F T F T   -> TP 2, FN 1, TN 1, FP 1
    out = sensitivity_specificity([1, 1, 1, 0, 0], [True, False, True, False, True])
    assert (out["tp"], out["fn"], out["tn"], out["fp"]) == (2, 1, 1, 1)
    assert out["sensitivity"]["k"] == 2 and out["sensitivity"]["n"] == 3
    assert out["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert out["sensitivity"]["interval"] == pytest.approx(list(wilson_interval(2, 3)))
    assert out["specificity"]["value"] == 0.5
    no_negatives = sensitivity_specificity([True], [True])
    assert no_negatives["specificity"] == {"k": 0, "n": 0, "value": None, "interval": [0.0, 1.0]}
    with pytest.raises(ValueError, match="truth values"):
        sensitivity_specificity([True, False], [True])


def test_cutoff_sets():
    assert CUTOFFS["ASC-US+"] == {"ASC-US", "LSIL", "ASC-H", "AGC", "HSIL", "SCC"}
    assert CUTOFFS["LSIL+"] == CUTOFFS["ASC-US+"] - {"ASC-US"}
    assert CUTOFFS["HSIL+"] == {"HSIL", "SCC"}  # ASC-H and AGC: positive at LSIL+, not at HSIL+


def test_counted_call():
    assert counted_call(False, "NILM") == "NILM"
    assert counted_call(True, "NILM") == UNSATISFACTORY  # nothing abnormal listed: negative everywhere
    assert counted_call(True, "HSIL") == "HSIL"  # unsatisfactory, but abnormal cells seen
    with pytest.raises(ValueError, match="interpretation must be one of"):
        counted_call(False, "HSIL+")


def test_at_cutoffs_hand_cohort():
    truth = ["NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC", "HSIL", UNSATISFACTORY]
    called = ["NILM", "NILM", "ASC-US", "HSIL", "LSIL", "SCC", "AGC", UNSATISFACTORY, "HSIL"]
    out = at_cutoffs(truth, called)
    # the unsatisfactory-truth slide is left out, whatever its call
    assert out["n"] == 8 and out["excluded_unsatisfactory"] == 1
    # ASC-US+: positives ASC-US LSIL ASC-H HSIL SCC AGC HSIL; called positive LSIL(ASC-US) ASC-H(HSIL)
    # HSIL(LSIL) SCC AGC -> TP 5; ASC-US(NILM) and HSIL(Unsatisfactory) -> FN 2; NILM -> TN 1
    a = out["ASC-US+"]
    assert (a["tp"], a["fn"], a["tn"], a["fp"]) == (5, 2, 1, 0)
    # LSIL+: positives LSIL ASC-H HSIL SCC AGC HSIL; LSIL called ASC-US is now a miss -> TP 4, FN 2;
    # NILM and ASC-US called NILM -> TN 2
    b = out["LSIL+"]
    assert (b["tp"], b["fn"], b["tn"], b["fp"]) == (4, 2, 2, 0)
    # HSIL+: positives HSIL(LSIL) SCC HSIL(Unsatisfactory) -> TP 1, FN 2; ASC-H called HSIL is a false
    # positive; NILM ASC-US LSIL AGC -> TN 4
    c = out["HSIL+"]
    assert (c["tp"], c["fn"], c["tn"], c["fp"]) == (1, 2, 4, 1)
    assert c["specificity"]["value"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="HSIL\\+"):
        at_cutoffs(["NILM"], ["HSIL+"])  # a triage call is not an interpretation


def test_roc_auc_with_ci():
    # pairs (positive, negative): (.35>.1) (.35<.4) (.8>.1) (.8>.4) -> 3/4
    out = roc_auc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=500, seed=1)
    assert out["auc"] == 0.75
    low, high = out["interval"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    # 4 slides, 2 positive: a resample is one class with probability 2 * (1/2)^4 = 1/8
    assert 0 < out["n_boot"] - out["n_valid"] < 500 * 0.25
    assert out == roc_auc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=500, seed=1)
    perfect = roc_auc_with_ci([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9], n_boot=200)
    assert perfect["auc"] == 1.0 and perfect["interval"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc_with_ci([1, 1], [0.2, 0.3])


def test_roc_auc_interval_narrows_with_more_slides():
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400):
        y = rng.random(n) < 0.3
        s = rng.normal(size=n) + 1.0 * y
        low, high = roc_auc_with_ci(y, s, n_boot=400)["interval"]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # width ~ 1 / sqrt(n): 10x the slides, about a third of the width


def test_confusion_hand_case():
    out = confusion(
        ["NILM", "HSIL", "HSIL", "NILM"],
        ["NILM", "LSIL", "HSIL", UNSATISFACTORY],
        ["NILM", "LSIL", "HSIL", UNSATISFACTORY],
    )
    assert out["rows"] == out["columns"] == ["NILM", "LSIL", "HSIL", UNSATISFACTORY]
    assert out["matrix"] == [[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="SCC"):
        confusion(["SCC"], ["NILM"], ["NILM"])


def test_gallery_hit_rate_hand_case():
    cell = [100, 100, 110, 110]
    top = [
        [[0, 0, 10, 10], cell],  # A: the abnormal cell is the second item
        [[0, 0, 10, 10]],  # B: IoU exactly 0.5 with its planted cell (50 / 100)
        [],  # C: nothing in the queue
        [[0, 0, 10, 10]],  # D: no planted abnormal cell, not an abnormal slide
        [[0, 0, 10, 10]],  # E: IoU 49 / 100 < 0.5, a miss
    ]
    planted = [[cell], [[0, 0, 10, 5]], [cell], [], [[0, 0, 10, 4.9]]]
    first = gallery_hit_rate(top, planted, k=1)
    assert (first["top_k"], first["k"], first["n"], first["skipped"]) == (1, 1, 4, 1)  # B
    assert first["value"] == pytest.approx(1 / 4)
    assert first["interval"] == pytest.approx(list(wilson_interval(1, 4)))
    assert gallery_hit_rate(top, planted, k=2)["value"] == pytest.approx(2 / 4)  # A and B
    assert gallery_hit_rate(top, planted, k=2, iou=0.3)["value"] == pytest.approx(3 / 4)  # and E


def test_triage_fraction_ties_are_conservative():
    # lowest HSIL+ slide scores 0.3; 0.1 and 0.2 go below it; the NILM slide tied at 0.3 stays -> 2 / 6
    out = triage_fraction([0.1, 0.2, 0.3, 0.3, 0.5, 0.9], [False, False, False, True, False, True])
    assert out == {"fraction": pytest.approx(2 / 6), "set_aside": 2, "n": 6, "threshold": 0.3}
    # an HSIL+ slide at the very bottom: nothing can be set aside
    assert triage_fraction([0.0, 0.5, 0.7], [True, False, False])["fraction"] == 0.0
    assert triage_fraction([0.2, 0.1], [False, False])["fraction"] == 1.0
