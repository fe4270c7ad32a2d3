"""Classification metrics for long-tailed cell classes: many / medium / few-shot accuracy, calibration.

Shot groups follow the convention of Liu et al., "Large-Scale Long-Tailed Recognition in an Open World" (OLTR),
CVPR 2019 (arXiv 1904.05160), kept by Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020 (arXiv 1910.09217): a class is *many-shot* with more than 100 TRAINING instances, *few-shot*
with fewer than 20, *medium-shot* in between (20-100). A group's accuracy is the mean recall of its classes (as
their ``shot_acc``), over the classes that have at least one evaluated crop; a group with no such class is None.

Expected calibration error (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, arXiv 1706.04599):
crops binned by confidence (the max probability) into ``n_bins`` equal-width bins of (0, 1], ECE =
``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``.

Glossary
    probs     (N, K) class probabilities (rows sum to 1); logits are turned into them by softmax.
    labels    (N,) int true classes in 0..K-1.
    train_counts  (K,) training instances per class: what decides the shot groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FEW",
    "GROUPS",
    "MANY",
    "bootstrap_report",
    "classification_report",
    "expected_calibration_error",
    "format_report",
    "shot_groups",
    "to_probabilities",
]

MANY = 100  # many-shot: more than this many training instances (OLTR, Liu et al. 2019)
FEW = 20  # few-shot: fewer than this many
GROUPS = ("many", "medium", "few")
N_BINS = 15  # Guo et al. 2017 use 15 bins
_PROB_TOL = 1e-4  # rows summing to 1 within this, all >= 0, are taken as probabilities
_EPS = 1e-12  # floor of p(true class) in the NLL


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def to_probabilities(scores: Any, *, logits: bool | None = None) -> np.ndarray:
    """(N, K) probabilities from probabilities or logits (numpy or torch); ``logits=None`` decides from the rows:
    non-negative rows summing to 1 are probabilities, anything else logits (softmax)."""
    x = _as_array(scores)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"scores must be (N, K); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite")
    if logits is None:
        logits = not (len(x) and (x >= 0).all() and np.allclose(x.sum(axis=1), 1.0, atol=_PROB_TOL))
    if not logits:
        return x
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _labels(labels: Any, n: int, k: int) -> np.ndarray:
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows of scores")
    if n and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be in 0..{k - 1}; got {y.min()}..{y.max()}")
    return y


def shot_groups(train_counts: Sequence[int], *, many: int = MANY, few: int = FEW) -> list[str]:
    """Each class's group by its training count: ``"many"`` (> many), ``"few"`` (< few), else ``"medium"``."""
    if few > many + 1:
        raise ValueError(f"few ({few}) must be at most many + 1 ({many + 1})")
    return ["many" if n > many else "few" if n < few else "medium" for n in (int(c) for c in train_counts)]


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """ECE of (N, K) probabilities (module docstring); 0.0 for no rows. Bin b holds confidences in
    (b / n_bins, (b + 1) / n_bins], the first bin also 0."""
    p = to_probabilities(probs, logits=False)
    y = _labels(labels, len(p), p.shape[1])
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if not len(p):
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(
        bins, weights=confidence, minlength=n_bins
    )
    # sum_b |B_b|/N |acc_b - conf_b| = sum_b |sum_{i in b} (correct_i - conf_i)| / N
    return float(np.abs(gap[count > 0]).sum() / len(p))


def _recalls(pred: np.ndarray, y: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(K,) recall per class (NaN for a class without crops); ``weights`` (N,) counts each crop that many times."""
    total = np.bincount(y, weights=weights, minlength=k)
    hit = np.bincount(y, weights=(pred == y) * (1.0 if weights is None else weights), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1e-300), np.nan)


def _group_means(recall: np.ndarray, groups: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for g in GROUPS:
        vals = [r for r, gg in zip(recall, groups, strict=True) if gg == g and not np.isnan(r)]
        out[g] = float(np.mean(vals)) if vals else None
    return out


def classification_report(
    probs_or_logits: Any,
    labels: Any,
    train_counts: Sequence[int],
    *,
    many: int = MANY,
    few: int = FEW,
    n_bins: int = N_BINS,
    class_names: Sequence[str] | None = None,
    logits: bool | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, many/medium/few-shot accuracy, per-class recall, confusion, ECE and NLL.

    Returns a JSON-ready dict: ``n``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes with
    crops), ``many_shot``, ``medium_shot``, ``few_shot`` (module docstring; None for an empty group),
    ``per_class_recall`` {name: recall or None}, ``per_class_support`` {name: crops}, ``confusion`` (K x K counts,
    rows = truth, columns = prediction), ``ece``, ``nll`` (mean ``-log p(true class)``, p floored at 1e-12),
    ``groups`` {group: [names]}, ``thresholds`` {"many": many, "few": few}, ``class_names``, ``train_counts``.
    Accuracies are None when there are no crops.
    """
    p = to_probabilities(probs_or_logits, logits=logits)
    n, k = p.shape
    y = _labels(labels, n, k)
    names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(k))
    if len(names) != k or len(train_counts) != k:
        raise ValueError(f"{len(names)} class names and {len(train_counts)} train_counts for {k} classes")
    groups = shot_groups(train_counts, many=many, few=few)
    pred = p.argmax(axis=1)
    recall = _recalls(pred, y, k)
    shots = _group_means(recall, groups)
    present = recall[~np.isnan(recall)]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, pred), 1)
    return {
        "n": int(n),
        "accuracy": float((pred == y).mean()) if n else None,
        "balanced_accuracy": float(present.mean()) if present.size else None,
        "many_shot": shots["many"],
        "medium_shot": shots["medium"],
        "few_shot": shots["few"],
        "per_class_recall": {
            name: None if np.isnan(r) else float(r) for name, r in zip(names, recall, strict=True)
        },
        "per_class_support": dict(zip(names, np.bincount(y, minlength=k).tolist(), strict=True)),
        "confusion": confusion.tolist(),
        "ece": expected_calibration_error(p, y, n_bins) if n else None,
        "nll": float(-np.log(np.maximum(p[np.arange(n), y], _EPS)).mean()) if n else None,
        "groups": {g: [name for name, gg in zip(names, groups, strict=True) if gg == g] for g in GROUPS},
        "thresholds": {"many": int(many), "few": int(few)},
        "class_names": list(names),
        "train_counts": [int(c) for c in train_counts],
    }


BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "many_shot", "medium_shot", "few_shot")


def bootstrap_report(
    probs_or_logits: Any,
    labels: Any,
    train_counts: Sequence[int],
    *,
    many: int = MANY,
    few: int = FEW,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    logits: bool | None = None,
) -> dict[str, dict[str, float | int] | None]:
    """Bootstrap intervals over resampled crops for accuracy, balanced accuracy and many/medium/few-shot accuracy.

    Crops are drawn with replacement (:func:`cytolt.evaluate.bootstrap.resample_weights`, seeded); a resample is
    scored as :func:`classification_report` would score the drawn crops (classes it drew no crop of are left out
    of its means), and :func:`cytolt.evaluate.bootstrap.percentile_interval` gives the bias-corrected percentile
    interval at ``level``. Returns {metric: {"value", "low", "high", "resamples"}}, None for a metric undefined on
    the whole set.
    """
    from cytolt.evaluate.bootstrap import percentile_interval, resample_weights

    p = to_probabilities(probs_or_logits, logits=logits)
    n, k = p.shape
    y = _labels(labels, n, k)
    if n == 0:
        raise ValueError("bootstrap_report needs at least one crop")
    if len(train_counts) != k:
        raise ValueError(f"{len(train_counts)} train_counts for {k} classes")
    groups = shot_groups(train_counts, many=many, few=few)
    pred = p.argmax(axis=1)
    correct = (pred == y).astype(np.float64)

    def score(weights: np.ndarray | None) -> list[float]:
        recall = _recalls(pred, y, k, weights)
        shots = _group_means(recall, groups)
        acc = correct.mean() if weights is None else (weights * correct).sum() / weights.sum()
        present = recall[~np.isnan(recall)]
        values = [acc, present.mean(), shots["many"], shots["medium"], shots["few"]]
        return [np.nan if v is None else float(v) for v in values]

    point = score(None)
    samples = np.array([score(w.astype(np.float64)) for w in resample_weights(n, n_resamples, seed)])
    return {
        name: None if np.isnan(point[j]) else percentile_interval(point[j], samples[:, j], level).as_dict()
        for j, name in enumerate(BOOTSTRAP_METRICS)
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_report(report: Mapping[str, Any], *, per_class: bool = True) -> str:
    """A classification report as a plain-text table: the summary line, then per class (group, train count,
    support, recall) when ``per_class``."""
    t = report["thresholds"]
    lines = [
        f"crops {report['n']}  accuracy {_fmt(report['accuracy'])}  balanced {_fmt(report['balanced_accuracy'])}  "
        f"many {_fmt(report['many_shot'])}  medium {_fmt(report['medium_shot'])}  few {_fmt(report['few_shot'])}  "
        f"ECE {_fmt(report['ece'])}  NLL {_fmt(report['nll'])}",
        f"(shot groups by training count: many > {t['many']}, few < {t['few']}, medium between)",
    ]
    if per_class:
        names = report["class_names"]
        width = max(8, *(len(c) for c in names))
        group_of = {name: g for g, members in report["groups"].items() for name in members}
        lines.append(f"{'class':<{width}}  group   train  crops  recall")
        for name, train in zip(names, report["train_counts"], strict=True):
            support = report["per_class_support"][name]
            lines.append(
                f"{name:<{width}}  {group_of[name]:<6} {train:>6} {support:>6}  {_fmt(report['per_class_recall'][name])}"
            )
    return "\n".join(lines)
