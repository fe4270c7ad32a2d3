"""Bootstrap 95% intervals for LVIS box AP by resampling test images, and the paired bootstrap of a difference.

Efron & Tibshirani, "An Introduction to the Bootstrap" (1993): the (bias-corrected) percentile interval of a
statistic over resamples drawn with replacement. Here the resampled unit is the test image: a resample of N images is scored
with the LVIS rules (Gupta et al. 2019, as lvis-api 0.5.3 applies them, see ``cytolt.evaluate.lvis``) as if its
images, duplicates included, were a test set of their own. The paired bootstrap scores two detectors on the same
resampled image sets, so the noise the two share (which images are hard) cancels in their difference; a
difference is called real only when its interval excludes 0.

Cost: the per-image matching (which detection matches which ground truth at each IoU threshold) does not depend
on the resample, so :func:`match_detections` computes it once; a resample only re-weights it. An image drawn k
times counts each of its detections and ground truths k times, and since its copies' detections share a score
they sit side by side in the ranking, so the weighted cumulative sums give the same precision/recall curve as
lvis-api on the duplicated set (only ties between *different* images' scores may order differently). 1,000
resamples of a 1,000-image test set take seconds.

Box AP only (``iou_type="bbox"``), area range "all": AP, AP50, APr, APc, APf and ``AP-<class>``.

Glossary
    I   images of the ground truth, in id order; K categories, in id order; T = 10 IoU thresholds 0.50:0.95;
        R = 101 recall points.
    weights  (I,) int, how many times each image is drawn in a resample (all ones: the test set itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from cytolt.evaluate._common import DetectionsLike, GtLike, load_detections, load_gt, sorted_categories

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
GROUPS = {"APr": "r", "APc": "c", "APf": "f"}
SUMMARY_KEYS = ("AP", "AP50", "APr", "APc", "APf")
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class MatchTable:
    """One detector's per-image matching on one ground truth, ready to be re-weighted.

    Per category k (lists of length K), the counted detections across all images in descending score (stable,
    images in id order): ``det_image[k]`` (M_k,) image index, ``det_tp[k]`` (T, M_k) bool matched and counted,
    ``det_fp[k]`` (T, M_k) bool unmatched and counted (a detection that is neither is ignored).
    ``gt_count`` (I, K): ground truths that count, per image and category.
    """

    image_ids: np.ndarray
    names: tuple[str, ...]
    frequency: tuple[str, ...]
    det_image: tuple[np.ndarray, ...]
    det_tp: tuple[np.ndarray, ...]
    det_fp: tuple[np.ndarray, ...]
    gt_count: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez_compressed``; :meth:`from_arrays` reads them back."""
        sizes = np.array([len(d) for d in self.det_image], dtype=np.int64)
        bits = 1 << np.arange(len(IOU_THRESHOLDS), dtype=np.uint16)[:, None]

        def pack(masks: tuple[np.ndarray, ...]) -> np.ndarray:  # (T, M) bool -> (M,) one bit per threshold
            return np.concatenate([np.bitwise_or.reduce(m * bits, axis=0) for m in masks] + [np.zeros(0)])

        return {
            "image_ids": self.image_ids,
            "names": np.array(self.names),
            "frequency": np.array(self.frequency),
            "sizes": sizes,
            "det_image": np.concatenate([*self.det_image, np.zeros(0, np.int32)]).astype(np.int32),
            "det_tp_bits": pack(self.det_tp).astype(np.uint16),
            "det_fp_bits": pack(self.det_fp).astype(np.uint16),
            "gt_count": self.gt_count.astype(np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MatchTable:
        bounds = np.concatenate([[0], np.cumsum(arrays["sizes"])])
        bits = 1 << np.arange(len(IOU_THRESHOLDS), dtype=np.uint16)[:, None]

        def split(name: str) -> list[np.ndarray]:
            return [arrays[name][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

        return cls(
            image_ids=np.asarray(arrays["image_ids"]),
            names=tuple(str(n) for n in arrays["names"]),
            frequency=tuple(str(f) for f in arrays["frequency"]),
            det_image=tuple(a.astype(np.int64) for a in split("det_image")),
            det_tp=tuple((a[None, :] & bits) > 0 for a in split("det_tp_bits")),
            det_fp=tuple((a[None, :] & bits) > 0 for a in split("det_fp_bits")),
            gt_count=np.asarray(arrays["gt_count"], dtype=np.int64),
        )


def _box_iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (D, G) of xywh boxes, pycocotools' rule for non-crowd boxes (no +1 on widths)."""
    d = dt[:, None, :]
    g = gt[None, :, :]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match_image(ious: np.ndarray, gt_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lvis-api's greedy matching of one image and category: (T, D) matched, (T, D) matched to an ignored gt.

    Detections in descending score; each takes the unmatched ground truth of highest IoU >= the threshold
    (the last one on ties, as lvis-api's loop does), regular ground truths before ignored ones.
    """
    num_dt, num_gt = ious.shape
    matched = np.zeros((len(IOU_THRESHOLDS), num_dt), dtype=bool)
    on_ignored = np.zeros_like(matched)
    if num_gt == 0 or num_dt == 0:
        return matched, on_ignored
    candidates = np.nonzero(ious.max(axis=1) >= IOU_THRESHOLDS[0])[0]  # the rest never match
    for t, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(num_gt, dtype=bool)
        limit = min(thr, 1 - 1e-10)
        for d in candidates:
            for pool in (~gt_ignore, gt_ignore):
                row = np.where(pool & ~taken, ious[d], -1.0)
                best = num_gt - 1 - int(np.argmax(row[::-1]))  # last index among equal maxima
                if row[best] >= limit:
                    matched[t, d] = True
                    on_ignored[t, d] = gt_ignore[best]
                    taken[best] = True
                    break
    return matched, on_ignored


def _limit_per_image(dets: list[dict[str, Any]], max_dets: int) -> list[dict[str, Any]]:
    """The ``max_dets`` highest-scoring detections of each image (all when -1), as ``LVISResults`` keeps them."""
    if max_dets < 0:
        return dets
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for det in dets:
        by_image.setdefault(det["image_id"], []).append(det)
    kept = []
    for group in by_image.values():
        kept += group if len(group) <= max_dets else sorted(group, key=lambda d: -d["score"])[:max_dets]
    return kept


def match_detections(gt: GtLike, detections: DetectionsLike, *, max_dets: int = 300) -> MatchTable:
    """Match ``detections`` to ``gt`` once, with lvis-api's rules, for re-weighting by :func:`score_table`.

    Federated rules: a detection of a class neither annotated in its image nor in the image's
    ``neg_category_ids`` is dropped; an unmatched one of a class in ``not_exhaustive_category_ids`` is ignored;
    a detection matched to a ground truth flagged ``ignore`` is ignored. At most ``max_dets`` per image
    (highest scores across classes; -1: all). ``gt``/``detections`` as in ``cytolt.evaluate.lvis.lvis_eval``.
    """
    gt_data, source = load_gt(gt, lvis=True)
    dets = _limit_per_image(load_detections(detections, gt_data, source, iou_type="bbox"), max_dets)
    cats = sorted_categories(gt_data)
    cat_index = {c["id"]: k for k, c in enumerate(cats)}
    images = sorted(gt_data["images"], key=lambda im: im["id"])
    img_index = {im["id"]: i for i, im in enumerate(images)}
    num_t = len(IOU_THRESHOLDS)

    gts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for ann in gt_data["annotations"]:
        gts.setdefault((img_index[ann["image_id"]], cat_index[ann["category_id"]]), []).append(ann)
    allowed = [{cat_index[c] for c in im["neg_category_ids"] if c in cat_index} for im in images]
    for i, k in gts:
        allowed[i].add(k)
    not_exhaustive = [{cat_index.get(c) for c in im["not_exhaustive_category_ids"]} for im in images]
    dts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for det in dets:
        i, k = img_index[det["image_id"]], cat_index[det["category_id"]]
        if k in allowed[i]:
            dts.setdefault((i, k), []).append(det)

    gt_count = np.zeros((len(images), len(cats)), dtype=np.int64)
    per_cat: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in cats]
    for i, k in sorted(set(gts) | set(dts)):
        g = gts.get((i, k), [])
        # lvis-api sorts ground truths ignore-last (stable) and detections by descending score (stable).
        g = sorted(g, key=lambda a: bool(a.get("ignore", 0)))
        d = sorted(dts.get((i, k), []), key=lambda a: -a["score"])
        gt_ignore = np.array([bool(a.get("ignore", 0)) for a in g], dtype=bool)
        gt_count[i, k] = int((~gt_ignore).sum())
        if not d:
            continue
        ious = _box_iou(
            np.array([a["bbox"] for a in d], dtype=np.float64).reshape(-1, 4),
            np.array([a["bbox"] for a in g], dtype=np.float64).reshape(-1, 4),
        )
        matched, on_ignored = _match_image(ious, gt_ignore)
        ignored = on_ignored | (~matched & (k in not_exhaustive[i]))
        scores = np.array([a["score"] for a in d], dtype=np.float64)
        per_cat[k].append((np.full(len(d), i), scores, matched & ~ignored, ~matched & ~ignored))

    det_image, det_tp, det_fp = [], [], []
    for parts in per_cat:
        if not parts:
            det_image.append(np.zeros(0, dtype=np.int64))
            det_tp.append(np.zeros((num_t, 0), dtype=bool))
            det_fp.append(np.zeros((num_t, 0), dtype=bool))
            continue
        scores = np.concatenate([p[1] for p in parts])
        order = np.argsort(-scores, kind="mergesort")  # lvis-api's accumulate: stable, images in id order
        tp = np.concatenate([p[2] for p in parts], axis=1)[:, order]
        # Detections ranked below the last true positive (at any threshold) never change AP under any
        # weights: they only lower precision after the highest recall is reached. Dropping them keeps
        # resampling cheap (a detector's low-score tail is nearly all false positives).
        hits = np.nonzero(tp.any(axis=0))[0]
        order = order[: hits[-1] + 1 if len(hits) else 0]
        det_image.append(np.concatenate([p[0] for p in parts])[order])
        det_tp.append(tp[:, : len(order)])
        det_fp.append(np.concatenate([p[3] for p in parts], axis=1)[:, order])
    return MatchTable(
        image_ids=np.array([im["id"] for im in images]),
        names=tuple(str(c.get("name", c["id"])) for c in cats),
        frequency=tuple(str(c["frequency"]) for c in cats),
        det_image=tuple(det_image),
        det_tp=tuple(det_tp),
        det_fp=tuple(det_fp),
        gt_count=gt_count,
    )


def _class_precision(
    image: np.ndarray, tp: np.ndarray, fp: np.ndarray, weights: np.ndarray, num_gt: float
) -> np.ndarray:
    """(T, R) interpolated precision of one category under image ``weights`` (lvis-api's accumulate)."""
    w = weights[image]
    keep = w > 0
    w = w[keep].astype(np.float64)
    tp_sum = np.cumsum(tp[:, keep] * w, axis=1)
    fp_sum = np.cumsum(fp[:, keep] * w, axis=1)
    out = np.zeros((len(IOU_THRESHOLDS), len(RECALL_POINTS)))
    n = tp_sum.shape[1]
    if n == 0:
        return out
    recall = tp_sum / num_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best precision to the right
    for t in range(len(IOU_THRESHOLDS)):
        idx = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        inside = idx < n
        out[t, inside] = envelope[t, idx[inside]]
    return out


def score_table(table: MatchTable, weights: np.ndarray | None = None) -> dict[str, float]:
    """LVIS box metrics of ``table`` with images counted ``weights`` (I,) times (default once each).

    Returns AP, AP50, APr, APc, APf and ``AP-<class>``; -1 where undefined (no ground truth), as lvis-api.
    """
    w = np.ones(table.num_images, dtype=np.int64) if weights is None else np.asarray(weights)
    if w.shape != (table.num_images,):
        raise ValueError(f"weights must have shape ({table.num_images},); got {w.shape}")
    num_gt = w @ table.gt_count
    per_class = np.full(len(table.names), -1.0)
    ap50 = np.full(len(table.names), -1.0)
    for k in range(len(table.names)):
        if num_gt[k] > 0:
            p = _class_precision(table.det_image[k], table.det_tp[k], table.det_fp[k], w, float(num_gt[k]))
            per_class[k] = p.mean()
            ap50[k] = p[0].mean()
    valid = per_class > -1
    freq = np.array(table.frequency)

    def mean(values: np.ndarray, mask: np.ndarray) -> float:
        return float(values[mask].mean()) if mask.any() else -1.0

    out = {"AP": mean(per_class, valid), "AP50": mean(ap50, valid)}
    out |= {key: mean(per_class, valid & (freq == g)) for key, g in GROUPS.items()}
    out |= {f"AP-{name}": float(v) for name, v in zip(table.names, per_class, strict=True)}
    return out


@dataclass(frozen=True)
class Interval:
    """A point estimate on the whole test set and its percentile interval over resamples."""

    value: float
    low: float
    high: float
    resamples: int  # resamples in which the metric was defined

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "resamples": self.resamples}


def metric_keys(table: MatchTable) -> tuple[str, ...]:
    """The metrics :func:`score_table` returns, in a fixed order: AP, AP50, APr, APc, APf, ``AP-<class>``."""
    return (*SUMMARY_KEYS, *(f"AP-{name}" for name in table.names))


def resample_weights(num_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, I) draw counts: each row draws ``num_images`` images with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(n_resamples, num_images))
    return np.stack([np.bincount(row, minlength=num_images) for row in draws])


def resample_scores(table: MatchTable, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples, len(metric_keys)) metrics of each resample, NaN where undefined.

    Two tables of the same ground truth scored with the same ``seed`` see the same resampled image sets, so
    their rows pair up: stored once per run, they give any later paired comparison without re-scoring.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    keys = metric_keys(table)
    out = np.empty((n_resamples, len(keys)))
    for r, w in enumerate(resample_weights(table.num_images, n_resamples, seed)):
        scores = score_table(table, w)
        out[r] = [scores[k] if scores[k] > -1 else np.nan for k in keys]
    return out


def percentile_interval(value: float, samples: np.ndarray, level: float = 0.95) -> Interval:
    """``value`` with the bias-corrected percentile interval of ``samples`` (NaN entries left out).

    Bias-corrected percentile (Efron 1981; Efron & Tibshirani 1993, sec. 14.3, BCa without the acceleration):
    ``z0 = Phi^-1(share of samples below value)`` (ties count half) and the interval runs between the
    ``Phi(2 z0 -+ z_{(1+level)/2})`` quantiles. AP is biased upwards under resampling (the precision envelope
    is a running max, and duplicated images sharpen it; measured: the resampled AP of a RetinaNet run averaged
    0.7 standard deviations above the whole-set AP), so the plain percentile interval can sit almost entirely
    above the estimate. The correction assumes the test set's AP is biased the same way against the
    population's and, for a plain shift ``b``, gives ``value - b -+ z sd``. For a paired difference the bias
    mostly cancels, z0 is near 0 and the interval is the plain percentile one.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    vals = np.asarray(samples, dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    n = len(vals)
    if n == 0:
        return Interval(float(value), float("nan"), float("nan"), 0)
    normal = NormalDist()
    below = (np.count_nonzero(vals < value) + 0.5 * np.count_nonzero(vals == value)) / n
    z0 = normal.inv_cdf(min(max(below, 0.5 / n), 1 - 0.5 / n))
    z = normal.inv_cdf((1 + level) / 2)
    quantiles = [normal.cdf(2 * z0 - z), normal.cdf(2 * z0 + z)]
    low, high = np.quantile(vals, quantiles)
    return Interval(float(value), float(low), float(high), n)


def bootstrap(
    table: MatchTable, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95
) -> dict[str, Interval]:
    """Percentile intervals of AP, AP50, APr, APc, APf and ``AP-<class>`` over image resamples.

    A metric undefined in a resample (its classes drew no ground truth) is left out of that resample.
    """
    percentile_interval(0.0, np.zeros(1), level)  # checks level before the work
    point = score_table(table)
    samples = resample_scores(table, n_resamples=n_resamples, seed=seed)
    return {k: percentile_interval(point[k], samples[:, j], level) for j, k in enumerate(metric_keys(table))}


def paired_bootstrap(
    baseline: MatchTable,
    method: MatchTable,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Intervals of ``method - baseline`` for every metric, both scored on the same resampled image sets.

    The two tables must come from the same ground truth. A difference is real when its interval excludes 0
    (``Interval.excludes_zero``).
    """
    percentile_interval(0.0, np.zeros(1), level)
    if not np.array_equal(baseline.image_ids, method.image_ids) or baseline.names != method.names:
        raise ValueError("paired_bootstrap needs two tables of the same ground truth (images and classes)")
    if not np.array_equal(baseline.gt_count, method.gt_count):
        raise ValueError("paired_bootstrap: the two tables count different ground truths")
    keys = metric_keys(baseline)
    a, b = score_table(baseline), score_table(method)
    point = {k: b[k] - a[k] if a[k] > -1 and b[k] > -1 else float("nan") for k in keys}
    diff = resample_scores(method, n_resamples=n_resamples, seed=seed) - resample_scores(
        baseline, n_resamples=n_resamples, seed=seed
    )
    return {k: percentile_interval(point[k], diff[:, j], level) for j, k in enumerate(keys)}
