"""Slide-level AUC, ROC curve and sensitivity at specificity (cytolt/evaluate/slide.py; named apart from
tests/io/test_slide.py so the basenames do not collide under pytest's default import mode)."""

from __future__ import annotations

import numpy as np
import pytest

from cytolt.evaluate import plot_roc, roc_curve, sensitivity_at_specificity, slide_auc


def brute_force_auc(labels, scores) -> float:
    """Count every (positive, negative) pair: 1 if the positive scores higher, 1/2 on a tie."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_hand_cases():
    assert slide_auc([1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1]) == 1.0
    assert slide_auc([0, 0, 1, 1], [0.9, 0.8, 0.7, 0.1]) == 0.0
    assert slide_auc([True, False], [0.5, 0.5]) == 0.5
    # pairs: (.8>.6) 1, (.8>.2) 1, (.6=.6) 1/2, (.6>.2) 1 -> 3.5 / 4
    assert slide_auc([True, False, True, False], [0.8, 0.6, 0.6, 0.2]) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_pairwise_count_and_roc_area(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.4
    scores = rng.integers(0, 8, 40) / 8 + 0.1 * labels  # few distinct values: many ties
    auc = slide_auc(labels, scores)
    assert auc == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert auc == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-12)


def test_roc_curve_hand_case():
    fpr, tpr, thr = roc_curve([True, False, True, False], [0.8, 0.6, 0.6, 0.2])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.6, 0.2])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])


def screening_case():
    # 20 negative slides scoring 0.00..0.19, three positives at 0.185, 0.5 and 0.05
    labels = np.r_[np.zeros(20, bool), np.ones(3, bool)]
    scores = np.r_[np.arange(20) / 100, 0.185, 0.5, 0.05]
    return labels, scores


def test_sensitivity_at_specificity_hand_case():
    labels, scores = screening_case()
    # spec >= 0.95 allows 1 false positive of 20: threshold 0.185 calls 0.19 (FP), 0.185 and 0.5 -> 2/3
    sens, thr = sensitivity_at_specificity(labels, scores, 0.95)
    assert sens == pytest.approx(2 / 3) and thr == 0.185
    # spec 1.0: no false positive allowed -> only 0.5 is called
    assert sensitivity_at_specificity(labels, scores, 1.0) == (pytest.approx(1 / 3), 0.5)
    # spec 0: every positive is reachable; the highest threshold that reaches all three is 0.05
    assert sensitivity_at_specificity(labels, scores, 0.0) == (1.0, 0.05)
    # the threshold really gives what it claims
    called = scores >= thr
    assert called[labels].mean() == pytest.approx(sens) and (~called[~labels]).mean() >= 0.95


def test_nothing_reaches_specificity():
    # the top negative outranks every positive: only "call nobody" has specificity 1
    assert sensitivity_at_specificity([0, 1, 1], [0.9, 0.5, 0.4], 1.0) == (0.0, np.inf)


def test_input_errors():
    with pytest.raises(ValueError, match="both positive and negative"):
        slide_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="equal length"):
        slide_auc([1, 0], [0.2])
    with pytest.raises(ValueError, match="bool or 0/1"):
        slide_auc([2, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        roc_curve([1, 0], [np.nan, 0.3])
    with pytest.raises(ValueError, match="specificity"):
        sensitivity_at_specificity([1, 0], [0.2, 0.3], 1.5)


def test_plot_roc(tmp_path):
    labels, scores = screening_case()
    path = tmp_path / "roc.png"
    fig = plot_roc(labels, scores, path, label="demo")
    assert path.stat().st_size > 1000
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == f"demo AUC = {slide_auc(labels, scores):.3f}"
    assert legend[1].startswith("sens 0.67 at spec 0.95")
