"""How a screening system is judged over a cohort of slides: the figures of a screening study, with intervals.

Pure numpy/scipy over plain per-slide records; no torch, no slide files. ``scripts/screening_study.py`` builds a
cohort and calls these.

Glossary (S slides)
    interpretation  a Bethesda interpretation, ``cytolt.bethesda.INTERPRETATIONS`` (NILM < ASC-US < LSIL < ASC-H
                    < AGC < HSIL < SCC), or ``cytolt.bethesda.UNSATISFACTORY``
    cut-off         a set of interpretations counted *positive*: ASC-US+, LSIL+, HSIL+ (:data:`CUTOFFS`)
    truth_*         (S,) what the slide is (from the generator's ground truth)
    called_*        (S,) what the system reported
    box             [x0, y0, x1, y1] level-0 px, continuous coordinates (area (x1 - x0) * (y1 - y0))
    interval        (low, high): a 95 % interval unless ``confidence`` says otherwise

Unsatisfactory slides, explicitly: a slide whose *truth* is unsatisfactory is left out of the cut-off figures
and counted apart (``excluded_unsatisfactory``). A slide *called* unsatisfactory counts with
:func:`counted_call`: ``Unsatisfactory`` (negative at every cut-off) when no abnormal cells were listed, else
the interpretation its listed cells support; a lab acts on listed abnormal cells even when the specimen is
unsatisfactory (Bethesda 2014), and on nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cytolt.bethesda import INTERPRETATIONS, UNSATISFACTORY, severity

__all__ = [
    "CUTOFFS",
    "at_cutoffs",
    "confusion",
    "counted_call",
    "gallery_hit_rate",
    "proportion",
    "roc_auc_with_ci",
    "sensitivity_specificity",
    "triage_fraction",
    "wilson_interval",
]

# Cut-off -> the interpretations called positive at it. ASC-US+ is every abnormal interpretation. LSIL+ drops
# ASC-US alone; ASC-H and AGC are in it because both are referred at least like LSIL (colposcopy, ASCCP 2019
# guidelines), though neither is a lesion grade. HSIL+ holds the high-grade lesions and carcinomas only: ASC-H
# ("cannot exclude HSIL") and AGC are atypia, not a high-grade interpretation, so a high-grade sensitivity
# that counted them would credit a system for an uncertain call.
CUTOFFS: dict[str, frozenset[str]] = {
    "ASC-US+": frozenset(INTERPRETATIONS[1:]),
    "LSIL+": frozenset({"LSIL", "ASC-H", "AGC", "HSIL", "SCC"}),
    "HSIL+": frozenset({"HSIL", "SCC"}),
}
_CALLS = (*INTERPRETATIONS, UNSATISFACTORY)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (Wilson 1927, JASA 22:209).

    With p = k/n and z the two-sided normal quantile of ``confidence``::

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    It stays inside [0, 1] and keeps its coverage near 0 and 1, where the Wald interval collapses (Brown, Cai &
    DasGupta 2001, Statistical Science 16:101); 0/10 gives (0, 0.278), not (0, 0). ``n = 0`` gives (0, 1).
    """
    from scipy.stats import norm

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n; got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _bools(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0/1")
        a = a.astype(bool)
    return a


def proportion(k: int, n: int, confidence: float = 0.95) -> dict[str, Any]:
    """``k`` of ``n`` as a record: ``{"k", "n", "value": k / n (None when n is 0), "interval": Wilson}``."""
    return {
        "k": k,
        "n": n,
        "value": k / n if n else None,
        "interval": list(wilson_interval(k, n, confidence)),
    }


def sensitivity_specificity(
    truth_positive: Sequence[bool] | np.ndarray,
    called_positive: Sequence[bool] | np.ndarray,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Sensitivity TP / (TP + FN) and specificity TN / (TN + FP), each with its Wilson interval.

    Args:
        truth_positive: (S,) bool, the slide is positive (e.g. its true interpretation is ASC-US+).
        called_positive: (S,) bool, the system called it positive. The caller decides what counts as a positive
            call (see :func:`counted_call` for unsatisfactory slides), so that rule lives in one place.

    Returns:
        ``{"tp", "fn", "tn", "fp", "sensitivity", "specificity"}``; the last two are
        ``{"k", "n", "value", "interval"}`` (``value`` None and interval (0, 1) when ``n`` is 0).
    """
    truth = _bools(truth_positive, "truth_positive")
    called = _bools(called_positive, "called_positive")
    if len(truth) != len(called):
        raise ValueError(f"got {len(truth)} truth values and {len(called)} calls")
    tp = int((truth & called).sum())
    fn = int((truth & ~called).sum())
    tn = int((~truth & ~called).sum())
    fp = int((~truth & called).sum())
    return {
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": proportion(tp, tp + fn, confidence),
        "specificity": proportion(tn, tn + fp, confidence),
    }


def _check_calls(values: Sequence[str], name: str) -> list[str]:
    out = [str(v) for v in values]
    bad = sorted({v for v in out if v not in _CALLS})
    if bad:
        raise ValueError(f"{name} must be one of {', '.join(_CALLS)}; got {', '.join(map(repr, bad))}")
    return out


def counted_call(unsatisfactory: bool, interpretation: str) -> str:
    """The call a slide counts with at the cut-offs and in the confusion matrix.

    Args:
        unsatisfactory: the system called the specimen unsatisfactory.
        interpretation: the most severe interpretation of the abnormal cells the system listed (``"NILM"`` when
            none), whatever the adequacy.

    Returns:
        ``interpretation`` for a satisfactory slide. For an unsatisfactory one: ``UNSATISFACTORY`` (not positive at
        any cut-off) when no abnormal cells were listed, else ``interpretation``: "unsatisfactory, but abnormal
        cells seen" is acted on.
    """
    severity(interpretation)  # ValueError for a name outside the vocabulary
    if unsatisfactory and interpretation == "NILM":
        return UNSATISFACTORY
    return interpretation


def at_cutoffs(
    truth_interpretations: Sequence[str],
    called_interpretations: Sequence[str],
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Sensitivity and specificity at the ASC-US+, LSIL+ and HSIL+ cut-offs (:data:`CUTOFFS`).

    At cut-off X a slide is truly positive when its true interpretation is in X and called positive when its
    called one is. ASC-US+: any abnormal interpretation. LSIL+: LSIL, ASC-H, AGC, HSIL, SCC (all but NILM and
    ASC-US). HSIL+: HSIL and SCC. ASC-H and AGC are positive at LSIL+ but not at HSIL+: they are referred like a
    lesion (colposcopy) yet are atypia, not a high-grade interpretation, and a high-grade figure (such as the
    100 % high-grade sensitivity of the gallery-system study in DOMAIN.md) is about high-grade lesions.

    Args:
        truth_interpretations: (S,) interpretation or ``UNSATISFACTORY``; unsatisfactory truth is left out of
            every cut-off and counted in ``excluded_unsatisfactory``.
        called_interpretations: (S,) interpretation or ``UNSATISFACTORY``, as :func:`counted_call` gives it; a
            called ``UNSATISFACTORY`` is negative at every cut-off.

    Returns:
        ``{"ASC-US+": sensitivity_specificity(...), "LSIL+": ..., "HSIL+": ..., "n": slides used,
        "excluded_unsatisfactory": slides left out}``.
    """
    truth = _check_calls(truth_interpretations, "truth_interpretations")
    called = _check_calls(called_interpretations, "called_interpretations")
    if len(truth) != len(called):
        raise ValueError(f"got {len(truth)} true and {len(called)} called interpretations")
    keep = [i for i, t in enumerate(truth) if t != UNSATISFACTORY]
    out: dict[str, Any] = {}
    for name, positive in CUTOFFS.items():
        out[name] = sensitivity_specificity(
            [truth[i] in positive for i in keep], [called[i] in positive for i in keep], confidence=confidence
        )
    out["n"] = len(keep)
    out["excluded_unsatisfactory"] = len(truth) - len(keep)
    return out


def roc_auc_with_ci(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """ROC AUC (:func:`cytolt.evaluate.slide.slide_auc`, ties 1/2) with a percentile bootstrap interval.

    The bootstrap resamples slides with replacement ``n_boot`` times (Efron & Tibshirani 1993, ch. 13: the
    percentile interval) and takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled AUCs. A resample holding only one class has no AUC and is skipped (``n_valid`` counts the rest);
    with tens of slides of each class this almost never happens. Deterministic for a given ``seed``.

    Returns:
        ``{"auc", "interval": [low, high], "n_boot", "n_valid", "n_positive", "n_negative"}``.
    """
    from cytolt.evaluate.slide import slide_auc

    auc = slide_auc(labels, scores)  # checks the inputs (1-D, equal length, both classes, finite)
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_boot, len(y)))
    aucs = []
    for idx in draws:
        yb = y[idx]
        if yb.all() or not yb.any():
            continue
        aucs.append(slide_auc(yb, s[idx]))
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail]) if aucs else (0.0, 1.0)
    return {
        "auc": auc,
        "interval": [float(low), float(high)],
        "n_boot": n_boot,
        "n_valid": len(aucs),
        "n_positive": int(y.sum()),
        "n_negative": int((~y).sum()),
    }


def confusion(truth: Sequence[str], called: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Count slides by (true label, called label).

    Returns:
        ``{"rows": labels, "columns": labels, "matrix": [[...]]}``: ``matrix[i][j]`` slides whose truth is
        ``labels[i]`` and whose call is ``labels[j]`` (rows truth, columns calls). ValueError for a value not in
        ``labels`` (every slide must land in a cell).
    """
    names = list(labels)
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"labels must be distinct; got {names}")
    if len(truth) != len(called):
        raise ValueError(f"got {len(truth)} true and {len(called)} called labels")
    unknown = sorted({v for v in (*truth, *called) if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the matrix labels {names}")
    matrix = [[0] * len(names) for _ in names]
    for t, c in zip(truth, called, strict=True):
        matrix[index[t]][index[c]] += 1
    return {"rows": names, "columns": names, "matrix": matrix}


def gallery_hit_rate(
    top_boxes_per_slide: Sequence[Sequence[Sequence[float]]],
    planted_abnormal_boxes_per_slide: Sequence[Sequence[Sequence[float]]],
    k: int,
    iou: float = 0.5,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Fraction of abnormal slides whose first ``k`` review items hold a true abnormal cell, with its Wilson
    interval: how often the gallery a reviewer sees first shows the lesion (how the gallery systems are judged,
    DOMAIN.md).

    A review item is a *true abnormal cell* when its box has IoU >= ``iou`` with a planted abnormal cell (the
    detection's predicted class does not matter: the reviewer sees the cell). Slides with no planted abnormal
    cell are not abnormal slides and are left out (``skipped``).

    Args:
        top_boxes_per_slide: per slide, the review items' boxes in the order the queue shows them.
        planted_abnormal_boxes_per_slide: per slide, the ground-truth boxes of its abnormal cells.
        k: how many items from the front of each slide's queue count.

    Returns:
        ``{"k": slides with a hit, "n": abnormal slides, "value", "interval", "top_k": k, "iou", "skipped"}``.
    """
    from cytolt.evaluate.confusion import box_iou_xywh

    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1]; got {iou}")
    if len(top_boxes_per_slide) != len(planted_abnormal_boxes_per_slide):
        raise ValueError(
            f"got {len(top_boxes_per_slide)} slides of review items and "
            f"{len(planted_abnormal_boxes_per_slide)} of planted cells"
        )

    def xywh(boxes: Sequence[Sequence[float]]) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.c_[b[:, :2], b[:, 2:] - b[:, :2]]

    hits = n = 0
    for top, planted in zip(top_boxes_per_slide, planted_abnormal_boxes_per_slide, strict=True):
        if len(planted) == 0:
            continue
        n += 1
        shown = xywh(top)[:k]
        # Float slack so an IoU of exactly 0.5 passes 0.5 whatever the rounding.
        if len(shown) and (box_iou_xywh(shown, xywh(planted)) >= iou - 1e-12).any():
            hits += 1
    return {
        **proportion(hits, n, confidence),
        "top_k": k,
        "iou": iou,
        "skipped": len(top_boxes_per_slide) - n,
    }


def triage_fraction(
    scores: Sequence[float] | np.ndarray, is_hsil_plus: Sequence[bool] | np.ndarray
) -> dict[str, Any]:
    """The largest fraction of slides that could be set aside as negative without missing an HSIL+ slide.

    Slides are ranked by slide score, lowest first, and set aside up to the lowest-scoring HSIL+ slide (the
    "no further review" quintile of slide-ranking systems, DOMAIN.md). Ties are conservative: a slide scoring
    the same as the lowest HSIL+ slide is *not* set aside (a threshold cannot separate equal scores). Without
    any HSIL+ slide every slide could be set aside (fraction 1).

    Returns:
        ``{"fraction", "set_aside", "n", "threshold"}``: slides with ``score < threshold`` are set aside
        (``threshold`` is the lowest HSIL+ score, None without one).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = _bools(is_hsil_plus, "is_hsil_plus")
    if s.ndim != 1 or len(s) != len(y):
        raise ValueError(f"scores and is_hsil_plus must be 1-D of equal length; got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    if len(s) == 0:
        return {"fraction": None, "set_aside": 0, "n": 0, "threshold": None}
    if not y.any():
        return {"fraction": 1.0, "set_aside": len(s), "n": len(s), "threshold": None}
    threshold = float(s[y].min())
    set_aside = int((s < threshold).sum())
    return {"fraction": set_aside / len(s), "set_aside": set_aside, "n": len(s), "threshold": threshold}
