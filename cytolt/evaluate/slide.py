"""Slide-level metrics: ROC AUC, ROC curve, sensitivity at a fixed specificity, and a ROC plot.

Glossary
    labels  (S,) bool, one per slide: True for an abnormal slide (the positive class, e.g. ASC-US+)
    scores  (S,) float, the slide score (higher = more likely abnormal), e.g. ``aggregate.SlideScorer``'s
    threshold  a slide is called positive when ``score >= threshold``

Screening papers report the AUC and the sensitivity reached at a high specificity (a lab tolerates few
false alarms on negative slides), so both are here, computed with exact tie handling.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Float slack when comparing a reached specificity with the target (19/20 must count as 0.95).
_EPS = 1e-12


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"labels and scores must be 1-D of equal length; got shapes {y.shape} and {s.shape}")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be bool or 0/1 (True = abnormal slide)")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(
            f"need both positive and negative slides; got {n_pos} positive of {len(y)} (AUC is undefined)"
        )
    return y, s


def slide_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2.

    Computed with the Mann-Whitney U statistic on average ranks (Hanley & McNeil 1982):
    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives' ranks.
    O(S log S); equals the trapezoidal area under ``roc_curve``.
    """
    from scipy.stats import rankdata

    y, s = _check(labels, scores)
    ranks = rankdata(s, method="average")  # ties share their mean rank, which is where the 1/2 comes from
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at every distinct score.

    Returns:
        fpr (K,), tpr (K,), thresholds (K,): point k calls a slide positive when ``score >= thresholds[k]``.
        thresholds decrease from +inf (nobody positive: fpr = tpr = 0) to the lowest score (fpr = tpr = 1).
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of equal scores: tied slides switch to positive together.
    ends = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = np.cumsum(~y_sorted)[ends]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    thresholds = np.r_[np.inf, s_sorted[ends]]
    return fpr, tpr, thresholds


def sensitivity_at_specificity(labels: Any, scores: Any, specificity: float = 0.95) -> tuple[float, float]:
    """Highest sensitivity over thresholds whose specificity is at least ``specificity``.

    Returns:
        (sensitivity, threshold): call positive when ``score >= threshold``. Among thresholds reaching the
        same sensitivity, the highest is returned (the best specificity). If only "nobody positive" meets
        the target (e.g. the top-scoring negative outranks all positives at 100% specificity), the result
        is (0.0, inf).
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1]; got {specificity}")
    fpr, tpr, thresholds = roc_curve(labels, scores)
    ok = np.nonzero(1.0 - fpr >= specificity - _EPS)[0]  # never empty: fpr[0] == 0
    best = tpr[ok].max()
    k = ok[np.nonzero(tpr[ok] == best)[0][0]]
    return float(best), float(thresholds[k])


def plot_roc(
    labels: Any,
    scores: Any,
    path: str | Path | None = None,
    *,
    specificity: float | None = 0.95,
    label: str | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the ROC curve with its AUC in the legend and, if ``specificity`` is set, the operating point.

    Saves to ``path`` (PNG, SVG, PDF) when given, and returns the figure (``matplotlib.figure.Figure``,
    no pyplot state), so a report can embed it.
    """
    from matplotlib.figure import Figure

    fpr, tpr, thresholds = roc_curve(labels, scores)
    auc = slide_auc(labels, scores)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, drawstyle="default", lw=2, label=f"{label + ' ' if label else ''}AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey")
    if specificity is not None:
        sens, thr = sensitivity_at_specificity(labels, scores, specificity)
        reached_fpr = fpr[thresholds == thr][0]  # the point itself, at or left of 1 - specificity
        ax.plot(
            [reached_fpr],
            [sens],
            "o",
            color="crimson",
            label=f"sens {sens:.2f} at spec {specificity:.2f} (score >= {thr:.3g})",
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
