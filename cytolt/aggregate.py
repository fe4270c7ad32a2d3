"""Slide-level scoring: from a slide's cell detections to evidence cells, counts, a slide score and a category.

Glossary (N detections of one slide, C classes):

- ``P``: (N, C) calibrated cell probabilities. From ``Detections.class_scores`` when present, else a one-hot
  matrix holding each detection's score at its label.
- ``score_type``: how ``P`` was made by the detector: ``"sigmoid"`` (independent per-class scores: RetinaNet,
  FCOS, ...) or ``"softmax"`` (foreground part of a softmax whose background is ``1 - sum(P)``: Faster R-CNN).
- cell label: ``argmax P`` after calibration (NorCal may change it); cell confidence: ``P`` at that label.
- ``counts[c]``: cells labelled ``c`` with confidence ``>= thresholds[c]`` (default 0.5: more likely than not).
- abnormal probability of a cell: ``sum`` of its abnormal-class probabilities (softmax, clipped to 1) or their
  ``max`` (sigmoid: the scores are not exclusive, so a sum could pass 1).
- slide score: mean of the ``k`` largest abnormal probabilities, counting missing cells as 0, so one
  suspicious cell scores lower than ten (the top-k pooling of published pipelines, DOMAIN.md).
- triage call: the first rule (most severe first) whose classes together have ``counts >= min_count``; else
  ``default_category``. Default rules: ``HSIL+`` (HSIL, SCC, AIS, adenocarcinoma among the abnormal classes)
  then ``ASC-US+`` (any abnormal class).
- interpretation: the most severe Bethesda interpretation the counts support (each abnormal class with a count
  supports its own: lsil -> LSIL, hsil -> HSIL, ...; :mod:`cytolt.bethesda`); findings: the organism classes
  with a count (reported beside the interpretation, never making a slide abnormal).
- adequacy (when the caller passes the slide's :class:`~cytolt.adequacy.SlideQuality`): decided first; an
  unsatisfactory slide's category is ``Unsatisfactory`` whatever its cells, and its cells, triage call and
  interpretation are still reported (an unsatisfactory slide with abnormal cells is what a lab must know).
- category: ``Unsatisfactory`` or the triage call.

Calibration (of ``P``, before everything else; :class:`ScoreCalibration`): ``"none"``; ``"temperature"`` (Guo
et al., "On Calibration of Modern Neural Networks", ICML 2017: logits divided by one scalar T, fit on labelled
cells with :meth:`SlideScorer.fit_temperature`); ``"norcal"`` (Pan et al., NeurIPS 2021, through
:mod:`cytolt.calibration`: foreground scores divided by ``N_c ** gamma``, training instances per class ``N_c``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cytolt import bethesda
from cytolt.adequacy import Adequacy, AdequacyRules, SlideQuality, assess_adequacy
from cytolt.detect.types import Detections

__all__ = [
    "CALIBRATIONS",
    "SCORE_TYPES",
    "CategoryRule",
    "ScoreCalibration",
    "SlideScore",
    "SlideScorer",
    "default_rules",
]

CALIBRATIONS = ("none", "temperature", "norcal")
SCORE_TYPES = ("sigmoid", "softmax")
_EPS = 1e-7  # probability clip before logit/log, so 0 and 1 stay finite
# 2: calibration and adequacy as their own entries; 1 (read too): calibration settings at the top level.
_FORMAT_VERSION = 2


@dataclass(frozen=True, kw_only=True)
class ScoreCalibration:
    """How the detector's class scores are calibrated before scoring (see the module docstring).

    Attributes:
        method: one of ``CALIBRATIONS``.
        score_type: one of ``SCORE_TYPES`` (how the detector's class scores were made).
        temperature: T for ``method="temperature"`` (set by :meth:`SlideScorer.fit_temperature`).
        instances_per_class: (C,) training instances per class, for ``method="norcal"``.
        norcal_gamma: NorCal's gamma >= 0 (tuned on validation data, as in the paper), for ``"norcal"``.
    """

    method: str = "none"
    score_type: str = "sigmoid"
    temperature: float = 1.0
    instances_per_class: tuple[float, ...] | None = None
    norcal_gamma: float | None = None

    def __post_init__(self) -> None:
        if self.method not in CALIBRATIONS:
            raise ValueError(
                f"calibration must be one of {', '.join(map(repr, CALIBRATIONS))}; got {self.method!r}"
            )
        if self.score_type not in SCORE_TYPES:
            raise ValueError(
                f"score_type must be one of {', '.join(map(repr, SCORE_TYPES))}; got {self.score_type!r}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if self.instances_per_class is not None:
            object.__setattr__(self, "instances_per_class", tuple(float(n) for n in self.instances_per_class))
        if self.method == "norcal" and (self.norcal_gamma is None or self.norcal_gamma < 0):
            raise ValueError("calibration 'norcal' needs norcal_gamma >= 0 (tune it on validation data)")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["instances_per_class"] = (
            None if self.instances_per_class is None else list(self.instances_per_class)
        )
        return data


@dataclass(frozen=True, kw_only=True)
class CategoryRule:
    """Call ``name`` when the cells of ``classes`` together reach ``min_count`` (after thresholds)."""

    name: str
    classes: tuple[str, ...]
    min_count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.min_count < 1:
            raise ValueError(f"rule {self.name!r}: min_count must be >= 1; got {self.min_count}")
        if not self.classes:
            raise ValueError(f"rule {self.name!r}: needs at least one class")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "min_count": self.min_count}


def default_rules(abnormal_classes: Sequence[str]) -> list[CategoryRule]:
    """``HSIL+`` (only if some abnormal class is HSIL-like, :data:`cytolt.bethesda.HSIL_PLUS`) then ``ASC-US+``
    (all abnormal classes)."""
    hsil = tuple(bethesda.classes_in(abnormal_classes, bethesda.HSIL_PLUS))
    rules = [CategoryRule(name="HSIL+", classes=hsil)] if hsil else []
    return [*rules, CategoryRule(name="ASC-US+", classes=tuple(abnormal_classes))]


@dataclass(frozen=True, kw_only=True)
class SlideScore:
    """Result of :meth:`SlideScorer.score`; indices point into the scored ``Detections``.

    ``top_indices[c]`` / ``top_scores[c]``: up to k cells labelled ``c``, best first (the class gallery).
    ``evidence_indices`` / ``evidence_scores``: the k cells with the highest abnormal probability (the slide
    score is their sum / k). ``reason`` says which rule fired, e.g. ``"HSIL+: 3 cells of HSIL, SCC >= 1"``, or
    why the slide is unsatisfactory. ``category`` is ``Unsatisfactory`` (``adequacy`` says why) or ``triage``.
    """

    category: str
    slide_score: float
    counts: dict[str, int]
    top_indices: dict[str, list[int]]
    top_scores: dict[str, list[float]]
    evidence_indices: list[int]
    evidence_scores: list[float]
    reason: str = ""
    triage: str = ""
    interpretation: str = "NILM"
    findings: list[str] = field(default_factory=list)
    adequacy: Adequacy | None = None
    labels: list[int] = field(default_factory=list, repr=False)

    @property
    def satisfactory(self) -> bool:
        """False only when adequacy was judged and the slide was not adequately examined."""
        return self.adequacy is None or self.adequacy.satisfactory

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for report.json); ``labels`` (calibrated label of every cell) is left out."""
        return {
            "category": self.category,
            "triage": self.triage,
            "interpretation": self.interpretation,
            "findings": list(self.findings),
            "adequacy": None if self.adequacy is None else self.adequacy.to_dict(),
            "slide_score": self.slide_score,
            "counts": dict(self.counts),
            "top_indices": {k: list(v) for k, v in self.top_indices.items()},
            "top_scores": {k: list(v) for k, v in self.top_scores.items()},
            "evidence_indices": list(self.evidence_indices),
            "evidence_scores": list(self.evidence_scores),
            "reason": self.reason,
        }


class SlideScorer:
    """Turn one slide's detections into a :class:`SlideScore`; see the module docstring for definitions.

    Args:
        class_names: the detector's C class names, in label order.
        abnormal_classes: the names that make a slide abnormal (ASC-US and worse, organisms excluded).
        k: evidence cells per class and for the slide score.
        thresholds: per-class confidence thresholds for counts; missing classes use 0.5.
        calibration: how class scores are calibrated first (default: not at all).
        category_rules: ordered rules, most severe first; ``None`` gives :func:`default_rules`.
        default_category: the call when no rule fires.
        adequacy: when a slide counts as adequately examined (default :class:`~cytolt.adequacy.AdequacyRules`).
    """

    def __init__(
        self,
        *,
        class_names: Sequence[str],
        abnormal_classes: Sequence[str],
        k: int = 10,
        thresholds: Mapping[str, float] | None = None,
        calibration: ScoreCalibration | None = None,
        category_rules: Sequence[CategoryRule] | None = None,
        default_category: str = "NILM",
        adequacy: AdequacyRules | None = None,
    ) -> None:
        self.class_names = [str(c) for c in class_names]
        if len(set(self.class_names)) != len(self.class_names) or not self.class_names:
            raise ValueError(f"class_names must be non-empty and unique; got {self.class_names}")
        self.abnormal_classes = [str(c) for c in abnormal_classes]
        self._check_names(self.abnormal_classes, "abnormal_classes")
        if not self.abnormal_classes:
            raise ValueError("abnormal_classes must name at least one class")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        self.k = int(k)
        self.calibration = calibration or ScoreCalibration()
        counts = self.calibration.instances_per_class
        if self.calibration.method == "norcal" and (counts is None or len(counts) != len(self.class_names)):
            raise ValueError(
                f"calibration 'norcal' needs instances_per_class with {len(self.class_names)} values"
            )
        self.adequacy = adequacy or AdequacyRules()
        self.thresholds = dict.fromkeys(self.class_names, 0.5)
        for name, thr in (thresholds or {}).items():
            self._check_names([name], "thresholds")
            if not 0.0 <= float(thr) <= 1.0:
                raise ValueError(f"threshold of {name!r} must be in [0, 1]; got {thr}")
            self.thresholds[name] = float(thr)
        rules = default_rules(self.abnormal_classes) if category_rules is None else list(category_rules)
        names = [r.name for r in rules]
        if len(set(names)) != len(names) or default_category in names or bethesda.UNSATISFACTORY in names:
            raise ValueError(
                f"rule names must be unique and differ from default {default_category!r} and "
                f"{bethesda.UNSATISFACTORY!r}; got {names}"
            )
        for r in rules:
            self._check_names(r.classes, f"rule {r.name!r}")
        self.category_rules = rules
        self.default_category = default_category

    @property
    def score_type(self) -> str:
        return self.calibration.score_type

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    def _check_names(self, names: Sequence[str], what: str) -> None:
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise ValueError(f"{what} names unknown classes {unknown}; classes are {self.class_names}")

    @property
    def categories(self) -> list[str]:
        """Possible triage calls, most severe first (``Unsatisfactory`` is not one: it is about adequacy)."""
        return [r.name for r in self.category_rules] + [self.default_category]

    # -- probabilities ------------------------------------------------------------------------------------
    def probabilities(self, dets: Detections, *, temperature: float | None = None) -> np.ndarray:
        """Calibrated (N, C) cell probabilities (float64)."""
        return self._calibrate(self._raw(dets), temperature=temperature)

    def _raw(self, dets: Detections) -> np.ndarray:
        C = len(self.class_names)
        arr = dets.numpy()
        if "class_scores" in arr:
            if arr["class_scores"].shape[1] != C:
                raise ValueError(
                    f"class_scores has {arr['class_scores'].shape[1]} columns; scorer has {C} classes"
                )
            return arr["class_scores"].astype(np.float64)
        labels = arr["labels"]
        if len(labels) and (labels.min() < 0 or labels.max() >= C):
            raise ValueError(f"labels must be in [0, {C}); got range [{labels.min()}, {labels.max()}]")
        P = np.zeros((len(labels), C))
        P[np.arange(len(labels)), labels] = arr["scores"]
        return P

    def _calibrate(self, P: np.ndarray, *, temperature: float | None = None) -> np.ndarray:
        method = self.calibration.method
        if method == "none" or len(P) == 0:
            return P
        present = P > 0  # one-hot inputs: absent classes stay exactly 0
        if self.score_type == "sigmoid":
            z = _logit(P)
            if method == "temperature":
                out = _sigmoid(z / (temperature or self.temperature))
            else:
                from cytolt.calibration import norcal_sigmoid

                counts = torch.tensor(self.calibration.instances_per_class)
                out = norcal_sigmoid(torch.from_numpy(z), counts, self.calibration.norcal_gamma)
                out = out.numpy()
            return np.where(present, out, 0.0)
        # softmax: rebuild the C+1 log-probabilities with the background last (log p is a valid logit vector)
        bg = np.clip(1.0 - P.sum(axis=1, keepdims=True), _EPS, 1.0)
        z = np.log(np.clip(np.concatenate([P, bg], axis=1), _EPS, 1.0))
        if method == "temperature":
            z = z / (temperature or self.temperature)
            full = np.exp(z - z.max(axis=1, keepdims=True))
            full /= full.sum(axis=1, keepdims=True)
        else:
            from cytolt.calibration import norcal

            counts = torch.tensor(self.calibration.instances_per_class, dtype=torch.float64)
            full = norcal(torch.from_numpy(z), counts, self.calibration.norcal_gamma)
            full = full.numpy()
        return np.where(present, full[:, :-1], 0.0)

    def _abnormal(self, P: np.ndarray) -> np.ndarray:
        cols = [self.class_names.index(c) for c in self.abnormal_classes]
        sub = P[:, cols]
        if self.score_type == "softmax":
            return np.clip(sub.sum(axis=1), 0.0, 1.0)
        return sub.max(axis=1) if len(cols) else np.zeros(len(P))

    # -- scoring ------------------------------------------------------------------------------------------
    def score(
        self,
        dets: Detections,
        quality: SlideQuality | None = None,
        *,
        adequacy_dets: Detections | None = None,
    ) -> SlideScore:
        """Score one slide's cells; with ``quality`` (what the pipeline measured) its adequacy is judged first.

        Boxes are used only for adequacy (which cells lie in focus). ``adequacy_dets``: the cells adequacy counts
        squamous cells from, when they differ from the scored ones (screening's second stage re-scores cells; the
        detector's own cells keep a classifier from moving an adequacy call). Default: ``dets``.
        """
        P = self.probabilities(dets)
        n = len(P)
        labels = P.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        conf = P[np.arange(n), labels] if n else np.zeros(0)
        counts, top_idx, top_sc = {}, {}, {}
        for c, name in enumerate(self.class_names):
            mine = np.flatnonzero(labels == c)
            order = mine[np.argsort(-conf[mine], kind="stable")][: self.k]
            top_idx[name] = order.tolist()
            top_sc[name] = conf[order].tolist()
            counts[name] = int((conf[mine] >= self.thresholds[name]).sum())
        abn = self._abnormal(P)
        ev = np.argsort(-abn, kind="stable")[: self.k]
        slide_score = float(abn[ev].sum() / self.k)
        triage, reason = self._call(counts)
        adequacy = None
        if quality is not None:
            counted = dets if adequacy_dets is None else adequacy_dets
            Pa = P if adequacy_dets is None else self.probabilities(adequacy_dets)
            na = len(Pa)
            la = Pa.argmax(axis=1) if na else np.zeros(0, dtype=np.int64)
            ca = Pa[np.arange(na), la] if na else np.zeros(0)
            is_squamous = np.array([bethesda.class_key(c) in bethesda.SQUAMOUS for c in self.class_names])
            thresholds = np.array([self.thresholds[c] for c in self.class_names])
            # a squamous cell counts at the same confidence its class needs to be counted at all
            squamous = is_squamous[la] & (ca >= thresholds[la]) if na else np.zeros(0, bool)
            adequacy = assess_adequacy(
                self.adequacy, quality, squamous=squamous, boxes=counted.boxes.double().cpu().numpy()
            )
        category = triage
        if adequacy is not None and not adequacy.satisfactory:
            category, reason = (
                bethesda.UNSATISFACTORY,
                f"{bethesda.UNSATISFACTORY}: " + "; ".join(adequacy.reasons),
            )
        supported = [bethesda.interpretation_of_class(c) for c in self.abnormal_classes if counts[c] > 0]
        findings = [c for c in bethesda.classes_in(self.class_names, bethesda.ORGANISMS) if counts[c] > 0]
        return SlideScore(
            category=category,
            slide_score=slide_score,
            counts=counts,
            top_indices=top_idx,
            top_scores=top_sc,
            evidence_indices=ev.tolist(),
            evidence_scores=abn[ev].tolist(),
            reason=reason,
            triage=triage,
            interpretation=bethesda.more_severe([i for i in supported if i is not None]),
            findings=findings,
            adequacy=adequacy,
            labels=labels.tolist(),
        )

    def _call(self, counts: Mapping[str, int]) -> tuple[str, str]:
        for rule in self.category_rules:
            total = sum(counts[c] for c in rule.classes)
            if total >= rule.min_count:
                return (
                    rule.name,
                    f"{rule.name}: {total} cells of {', '.join(rule.classes)} >= {rule.min_count}",
                )
        return self.default_category, f"{self.default_category}: no rule reached its count"

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(
        self,
        slides: Sequence[Detections],
        slide_labels: Sequence[str],
        *,
        target_sensitivity: float | None = None,
        min_specificity: float | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Choose per-class thresholds on labelled slides; returns a per-class report and updates ``thresholds``.

        For an abnormal class ``c`` whose first (most severe) rule is ``r``: a slide is *positive* when its label
        is ``r`` or more severe, and its statistic is the ``r.min_count``-th highest confidence among its cells
        labelled ``c`` (0 if fewer), so "statistic >= t" is "class c alone fires r at threshold t". The threshold
        maximises Youden's J = sensitivity + specificity - 1; with ``target_sensitivity`` it is the highest
        one reaching it, which keeps specificity highest; with ``min_specificity`` it is the one of highest
        sensitivity whose specificity stays at least that (ties: the highest threshold). Per-class Youden
        thresholds can add up: the category rules OR the classes, so each class's false-positive slides count
        together; ``min_specificity=1.0`` keeps every negative fitting slide negative for the rule as a whole.
        The threshold is placed midway between the chosen statistic and the
        next lower one for margin. Classes without positive and negative slides, or where no threshold beats
        chance, keep their threshold (``"kept"`` in the report). Calibration is applied first, so fit
        temperature/NorCal before thresholds.
        """
        from cytolt.evaluate.slide import roc_curve

        if len(slides) != len(slide_labels):
            raise ValueError(f"got {len(slides)} slides and {len(slide_labels)} labels")
        if target_sensitivity is not None and min_specificity is not None:
            raise ValueError("give target_sensitivity or min_specificity, not both")
        if min_specificity is not None and not 0.0 <= min_specificity <= 1.0:
            raise ValueError(f"min_specificity must be in [0, 1]; got {min_specificity}")
        cats = self.categories
        unknown = sorted({str(lab) for lab in slide_labels} - set(cats))
        if unknown:
            raise ValueError(f"slide_labels {unknown} are not categories; choose from {cats}")
        severity = np.array([cats.index(str(lab)) for lab in slide_labels])  # 0 = most severe
        probs = [self.probabilities(d) for d in slides]
        report: dict[str, dict[str, Any]] = {}
        for name in self.abnormal_classes:
            rule_i = next((i for i, r in enumerate(self.category_rules) if name in r.classes), None)
            if rule_i is None:
                report[name] = {"kept": self.thresholds[name], "why": "no category rule uses this class"}
                continue
            n_req = self.category_rules[rule_i].min_count
            c = self.class_names.index(name)
            stat = np.array([_nth_confidence(P, c, n_req) for P in probs])
            positive = severity <= rule_i
            if positive.all() or not positive.any():
                report[name] = {"kept": self.thresholds[name], "why": "needs positive and negative slides"}
                continue
            fpr, tpr, thr = roc_curve(positive, stat)
            ok = np.isfinite(thr) & (thr > 0)  # a slide with no such cell can never count
            if min_specificity is not None:
                # fpr is a fraction of the negatives; the small tolerance keeps 1 - fpr == 0.95 from failing 0.95
                tpr_ok = np.where(ok & (1.0 - fpr >= min_specificity - 1e-12), tpr, -np.inf)
                best = int(np.argmax(tpr_ok))  # first max: the highest threshold among ties
                if not tpr_ok[best] > 0:
                    report[name] = {
                        "kept": self.thresholds[name],
                        "why": f"no threshold finds a positive at specificity >= {min_specificity}",
                    }
                    continue
            elif target_sensitivity is None:
                j = np.where(ok, tpr - fpr, -np.inf)
                best = int(np.argmax(j))  # first max: the highest threshold among ties
                if not j[best] > 0:
                    report[name] = {"kept": self.thresholds[name], "why": "no threshold beats chance"}
                    continue
            else:
                reach = np.flatnonzero(ok & (tpr >= target_sensitivity))
                if not len(reach):
                    report[name] = {"kept": self.thresholds[name], "why": "target sensitivity not reached"}
                    continue
                best = int(reach[0])
            lower = thr[best + 1] if best + 1 < len(thr) else 0.0
            self.thresholds[name] = float((thr[best] + max(lower, 0.0)) / 2)
            report[name] = {
                "threshold": self.thresholds[name],
                "sensitivity": float(tpr[best]),
                "specificity": float(1 - fpr[best]),
                "youden_j": float(tpr[best] - fpr[best]),
                "positives": int(positive.sum()),
                "negatives": int((~positive).sum()),
            }
        return report

    def fit_temperature(self, dets: Detections, is_true_positive: Sequence[bool] | np.ndarray) -> float:
        """Fit the temperature on labelled cells; returns T and stores it (needs ``calibration="temperature"``).

        ``is_true_positive`` (N,) says whether each detection matched a true cell of its class. T minimises the
        binary negative log-likelihood of each detection's calibrated confidence at its own label (detection
        calibration as in Kueppers et al., CVPR-W 2020) over T in [0.05, 20], searched on log T.
        """
        from scipy.optimize import minimize_scalar

        if self.calibration.method != "temperature":
            raise ValueError(
                f"fit_temperature needs calibration method 'temperature'; scorer has {self.calibration.method!r}"
            )
        y = np.asarray(is_true_positive, dtype=bool)
        if y.shape != (len(dets),):
            raise ValueError(f"is_true_positive must have shape ({len(dets)},); got {y.shape}")
        if y.all() or not y.any():
            raise ValueError("fit_temperature needs both true and false positives")
        raw = self._raw(dets)
        labels = dets.labels.cpu().numpy()
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            p = np.clip(self._calibrate(raw, temperature=float(np.exp(log_t)))[rows, labels], _EPS, 1 - _EPS)
            return float(-(y * np.log(p) + (~y) * np.log1p(-p)).mean())

        res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
        self.calibration = dataclasses.replace(self.calibration, temperature=float(np.exp(res.x)))
        return self.temperature

    # -- persistence --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings (thresholds, calibration, adequacy included); :meth:`from_dict` restores them."""
        return {
            "format_version": _FORMAT_VERSION,
            "class_names": list(self.class_names),
            "abnormal_classes": list(self.abnormal_classes),
            "k": self.k,
            "thresholds": dict(self.thresholds),
            "calibration": self.calibration.to_dict(),
            "category_rules": [r.to_dict() for r in self.category_rules],
            "default_category": self.default_category,
            "adequacy": dataclasses.asdict(self.adequacy),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideScorer:
        """A scorer from :meth:`to_dict`'s output; format 1 (calibration settings at the top level) is read too."""
        version = data.get("format_version")
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"SlideScorer settings format_version {version!r}; this cytolt reads 1 and {_FORMAT_VERSION}"
            )
        if version == 1:
            calibration = ScoreCalibration(
                method=data.get("calibration", "none"),
                score_type=data.get("score_type", "sigmoid"),
                temperature=data.get("temperature", 1.0),
                instances_per_class=data.get("class_counts"),
                norcal_gamma=data.get("norcal_gamma"),
            )
            adequacy = None
        else:
            calibration = ScoreCalibration(**data["calibration"])
            adequacy = AdequacyRules(**data["adequacy"]) if data.get("adequacy") else None
        return cls(
            class_names=data["class_names"],
            abnormal_classes=data["abnormal_classes"],
            k=data["k"],
            thresholds=data.get("thresholds"),
            calibration=calibration,
            category_rules=[CategoryRule(**r) for r in data["category_rules"]],
            default_category=data.get("default_category", "NILM"),
            adequacy=adequacy,
        )


def _nth_confidence(P: np.ndarray, c: int, n: int) -> float:
    """The n-th highest confidence among cells whose arg-max label is ``c`` (0.0 if fewer than n)."""
    if len(P) == 0:
        return 0.0
    mine = P[P.argmax(axis=1) == c, c]
    if len(mine) < n:
        return 0.0
    return float(np.sort(mine)[::-1][n - 1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form
