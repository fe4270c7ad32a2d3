"""Tests of cytolt.aggregate.SlideScorer: hand-made slide calls, threshold fitting, calibration, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cytolt.aggregate import CategoryRule, ScoreCalibration, SlideScorer, default_rules
from cytolt.detect.types import Detections

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL", "SCC", "candida"]
ABNORMAL = ["ASC-US", "LSIL", "HSIL", "SCC"]


def _cells(*cells: tuple[str, float], class_scores: list[list[float]] | None = None) -> Detections:
    """Detections of named cells (class, score) in a row of 20 px boxes."""
    n = len(cells)
    return Detections(
        boxes=[[i * 30, 0, i * 30 + 20, 20] for i in range(n)],
        scores=[s for _, s in cells],
        labels=[CLASSES.index(c) for c, _ in cells],
        class_scores=class_scores,
    )


def _scorer(**kwargs) -> SlideScorer:
    return SlideScorer(class_names=CLASSES, abnormal_classes=ABNORMAL, **kwargs)


def test_default_rules_group_hsil_like_classes() -> None:
    rules = default_rules(ABNORMAL)
    assert [(r.name, r.classes) for r in rules] == [("HSIL+", ("HSIL", "SCC")), ("ASC-US+", tuple(ABNORMAL))]
    assert [r.name for r in default_rules(["weird-a", "weird-b"])] == ["ASC-US+"]


@pytest.mark.parametrize(
    ("cells", "category"),
    [
        ((), "NILM"),
        ((("NILM", 0.99), ("candida", 0.9), ("ASC-US", 0.4)), "NILM"),  # ASC-US below its 0.5 threshold
        ((("NILM", 0.99), ("ASC-US", 0.7)), "ASC-US+"),
        ((("LSIL", 0.6), ("HSIL", 0.45)), "ASC-US+"),
        ((("NILM", 0.99), ("ASC-US", 0.7), ("SCC", 0.51)), "HSIL+"),
    ],
)
def test_hand_made_slides_get_the_expected_call(cells: tuple, category: str) -> None:
    result = _scorer().score(_cells(*cells))
    assert result.category == category
    assert result.reason.startswith(category)


def test_rule_min_count_and_custom_thresholds() -> None:
    rules = [
        CategoryRule(name="HSIL+", classes=("HSIL", "SCC"), min_count=3),
        CategoryRule(name="ASC-US+", classes=("ASC-US",)),
    ]
    scorer = _scorer(category_rules=rules, thresholds={"HSIL": 0.3})
    two = _cells(("HSIL", 0.35), ("HSIL", 0.9))
    three = _cells(("HSIL", 0.35), ("HSIL", 0.9), ("SCC", 0.8))
    assert scorer.score(two).category == "NILM"  # LSIL-like classes are in no rule here
    assert scorer.score(three).category == "HSIL+"
    assert scorer.score(three).counts["HSIL"] == 2 and scorer.score(three).counts["SCC"] == 1


def test_slide_score_is_mean_of_top_k_abnormal_probabilities_and_evidence_is_kept() -> None:
    dets = _cells(("NILM", 0.99), ("HSIL", 0.9), ("ASC-US", 0.6), ("ASC-US", 0.3), ("candida", 0.8))
    result = _scorer(k=3).score(dets)
    # abnormal probabilities: 0, 0.9, 0.6, 0.3, 0 -> top 3 = 0.9, 0.6, 0.3 -> mean 0.6
    assert result.slide_score == pytest.approx(0.6)
    assert result.evidence_indices == [1, 2, 3]
    # fewer abnormal cells than k count as zeros: (0.9 + 0 + 0) / 3
    assert _scorer(k=3).score(_cells(("HSIL", 0.9), ("NILM", 0.8))).slide_score == pytest.approx(0.3)
    assert result.top_indices["ASC-US"] == [2, 3]
    assert result.top_scores["ASC-US"] == pytest.approx([0.6, 0.3])
    assert result.top_indices["LSIL"] == []
    assert result.counts == {"NILM": 1, "ASC-US": 1, "LSIL": 0, "HSIL": 1, "SCC": 0, "candida": 1}


def test_softmax_scores_add_up_across_abnormal_classes() -> None:
    # one cell split between ASC-US and LSIL: softmax probabilities are exclusive, so P(abnormal) = 0.6
    cs = [[0.1, 0.3, 0.3, 0.0, 0.0, 0.0]]
    dets = _cells(("ASC-US", 0.3), class_scores=cs)
    assert _scorer(k=1, calibration=ScoreCalibration(score_type="softmax")).score(
        dets
    ).slide_score == pytest.approx(0.6)
    assert _scorer(k=1, calibration=ScoreCalibration(score_type="sigmoid")).score(
        dets
    ).slide_score == pytest.approx(0.3)


def _toy_set(rng: np.random.Generator) -> tuple[list[Detections], list[str]]:
    """12 slides: every slide holds an HSIL-looking cell up to 0.45 and HSIL+ slides one at 0.55 or more;
    NILM and ASC-US+ slides hold an ASC-US-looking cell up to 0.25, ASC-US+ slides one at 0.35-0.6."""
    slides, labels = [], []
    for i in range(12):
        kind = ("NILM", "ASC-US+", "HSIL+")[i % 3]
        cells = [("NILM", float(rng.uniform(0.5, 1))) for _ in range(5)]
        cells.append(("HSIL", float(rng.uniform(0.1, 0.45))))
        if kind == "HSIL+":
            cells.append(("HSIL", float(rng.uniform(0.55, 0.9))))
        else:
            cells.append(("ASC-US", float(rng.uniform(0.05, 0.25))))
        if kind == "ASC-US+":
            cells.append(("ASC-US", float(rng.uniform(0.35, 0.6))))
        slides.append(_cells(*cells))
        labels.append(kind)
    return slides, labels


def test_fit_picks_thresholds_that_separate_the_toy_set() -> None:
    slides, labels = _toy_set(np.random.default_rng(0))
    scorer = _scorer()
    before = [scorer.score(s).category for s in slides]
    assert before != labels  # default 0.5 thresholds misclassify the ASC-US+ slides
    report = scorer.fit(slides, labels)
    hsil_top_nilm = max(
        float(s.scores[s.labels == 3].max()) for s, lab in zip(slides, labels, strict=True) if lab != "HSIL+"
    )
    hsil_min_pos = min(
        float(s.scores[s.labels == 3].max()) for s, lab in zip(slides, labels, strict=True) if lab == "HSIL+"
    )
    assert hsil_top_nilm < scorer.thresholds["HSIL"] < hsil_min_pos
    assert report["HSIL"]["youden_j"] == pytest.approx(1.0)
    # ASC-US cells must flag ASC-US+ and HSIL+ slides; HSIL+ slides have none, so at best half of them
    assert report["ASC-US"]["sensitivity"] == 0.5 and report["ASC-US"]["specificity"] == 1.0
    assert 0.25 < scorer.thresholds["ASC-US"] < 0.35
    assert "kept" in report["SCC"]  # no SCC cells: nothing to fit, the threshold stays
    assert [scorer.score(s).category for s in slides] == labels


def test_fit_with_min_specificity_keeps_every_negative_negative() -> None:
    # HSIL+ slides: top HSIL cell 0.9, 0.8, 0.3; NILM slides: 0.5, 0.2 (Youden would take 0.65: J = 2/3)
    slides = [_cells(("HSIL", s)) for s in (0.9, 0.8, 0.3, 0.5, 0.2)]
    labels = ["HSIL+", "HSIL+", "HSIL+", "NILM", "NILM"]
    scorer = _scorer()
    report = scorer.fit(slides, labels, min_specificity=1.0)
    assert scorer.thresholds["HSIL"] == pytest.approx(0.65)  # midway between 0.8 and the NILM slide's 0.5
    assert report["HSIL"]["specificity"] == 1.0 and report["HSIL"]["sensitivity"] == pytest.approx(2 / 3)
    scorer.fit(slides, labels, min_specificity=0.5)  # one NILM slide may be lost: all positives found
    assert scorer.thresholds["HSIL"] == pytest.approx(0.25)
    # a negative above every positive leaves nothing at specificity 1: the threshold is kept
    scorer = _scorer()
    report = scorer.fit(
        [_cells(("HSIL", 0.6)), _cells(("HSIL", 0.9))], ["HSIL+", "NILM"], min_specificity=1.0
    )
    assert "kept" in report["HSIL"] and scorer.thresholds["HSIL"] == 0.5
    with pytest.raises(ValueError, match="not both"):
        scorer.fit(slides, labels, min_specificity=1.0, target_sensitivity=0.9)
    with pytest.raises(ValueError, match="min_specificity must be in"):
        scorer.fit(slides, labels, min_specificity=1.5)


def test_fit_with_target_sensitivity_takes_the_highest_threshold_reaching_it() -> None:
    # HSIL+ slides: top HSIL cell 0.9, 0.8, 0.3; NILM slides: 0.5, 0.2
    slides = [_cells(("HSIL", s)) for s in (0.9, 0.8, 0.3, 0.5, 0.2)]
    labels = ["HSIL+", "HSIL+", "HSIL+", "NILM", "NILM"]
    scorer = _scorer()
    scorer.fit(slides, labels, target_sensitivity=0.6)
    # 2 of 3 positives (0.67 >= 0.6) first reached at score 0.8; midway to the next score 0.5 -> 0.65
    assert scorer.thresholds["HSIL"] == pytest.approx(0.65)
    scorer.fit(slides, labels, target_sensitivity=1.0)
    assert scorer.thresholds["HSIL"] == pytest.approx(0.25)  # 0.3 and next lower 0.2


def test_fit_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    true_logit = rng.normal(0, 1.5, n)
    correct = rng.random(n) < 1 / (1 + np.exp(-true_logit))
    scores = 1 / (1 + np.exp(-3.0 * true_logit))  # a detector three times too confident
    dets = Detections(boxes=np.tile([0, 0, 10, 10], (n, 1)), scores=scores, labels=np.full(n, 3))
    scorer = _scorer(calibration=ScoreCalibration(method="temperature"))
    t = scorer.fit_temperature(dets, correct)
    assert 2.5 < t < 3.6 and scorer.temperature == t
    # calibrated confidences are now close to the true probability
    p = scorer.probabilities(dets)[:, 3]
    assert np.abs(p - 1 / (1 + np.exp(-true_logit))).mean() < 0.03
    with pytest.raises(ValueError, match="calibration method 'temperature'"):
        _scorer().fit_temperature(dets, correct)


def test_norcal_lifts_a_rare_class_over_a_frequent_one() -> None:
    from cytolt.calibration import norcal, norcal_sigmoid

    counts = [50_000, 2_000, 1_000, 300, 30, 500]
    cs = [[0.55, 0.02, 0.02, 0.50, 0.01, 0.01]]
    dets = _cells(("NILM", 0.55), class_scores=cs)
    plain = _scorer(k=1)
    assert plain.score(dets).top_indices["NILM"] == [0]
    cal = _scorer(
        k=1, calibration=ScoreCalibration(method="norcal", instances_per_class=counts, norcal_gamma=0.3)
    )
    result = cal.score(dets)
    assert result.top_indices["HSIL"] == [0] and result.labels == [3]
    z = torch.logit(torch.tensor(cs, dtype=torch.float64), eps=1e-7)
    expected = norcal_sigmoid(z, torch.tensor(counts, dtype=torch.float64), 0.3).numpy()
    assert np.allclose(cal.probabilities(dets), expected)
    # softmax detectors: foreground probabilities with background = 1 - sum go through cytolt.calibration.norcal
    cs_soft = [[0.30, 0.02, 0.02, 0.28, 0.01, 0.01]]
    soft = _scorer(
        k=1,
        calibration=ScoreCalibration(
            method="norcal", score_type="softmax", instances_per_class=counts, norcal_gamma=0.3
        ),
    )
    full = torch.log(torch.tensor([cs_soft[0] + [1 - sum(cs_soft[0])]], dtype=torch.float64))
    expected_soft = norcal(full, torch.tensor(counts, dtype=torch.float64), 0.3).numpy()[:, :-1]
    assert np.allclose(soft.probabilities(_cells(("NILM", 0.3), class_scores=cs_soft)), expected_soft)
    assert soft.score(_cells(("NILM", 0.3), class_scores=cs_soft)).labels == [3]


def test_to_dict_is_json_safe_and_round_trips() -> None:
    slides, labels = _toy_set(np.random.default_rng(1))
    scorer = _scorer(
        k=5,
        calibration=ScoreCalibration(
            method="norcal", instances_per_class=[100, 50, 40, 20, 5, 30], norcal_gamma=0.2
        ),
    )
    scorer.fit(slides, labels)
    data = json.loads(json.dumps(scorer.to_dict()))
    back = SlideScorer.from_dict(data)
    assert back.to_dict() == scorer.to_dict()
    for s in slides:
        assert back.score(s).to_dict() == scorer.score(s).to_dict()
    json.dumps(scorer.score(slides[0]).to_dict())  # the result is JSON-safe too
    with pytest.raises(ValueError, match="format_version"):
        SlideScorer.from_dict({**data, "format_version": 0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"abnormal_classes": ["HSIL", "AIS"]}, r"unknown classes \['AIS'\]"),
        ({"calibration": {"method": "platt"}}, "'none', 'temperature', 'norcal'"),
        ({"calibration": {"score_type": "logits"}}, "'sigmoid', 'softmax'"),
        ({"calibration": {"method": "norcal", "norcal_gamma": 0.5}}, "needs instances_per_class"),
        ({"calibration": {"method": "norcal", "instances_per_class": [1] * 6}}, "needs norcal_gamma"),
        ({"thresholds": {"hsil": 0.5}}, "thresholds names unknown"),
        ({"thresholds": {"HSIL": 1.5}}, r"must be in \[0, 1\]"),
        ({"k": 0}, "k must be >= 1"),
        ({"category_rules": [CategoryRule(name="NILM", classes=("HSIL",))]}, "differ from default"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        if isinstance(kwargs.get("calibration"), dict):  # a bad calibration fails where it is built
            kwargs = {**kwargs, "calibration": ScoreCalibration(**kwargs["calibration"])}
        SlideScorer(**{"class_names": CLASSES, "abnormal_classes": ABNORMAL, **kwargs})


def test_fit_and_score_input_errors() -> None:
    scorer = _scorer()
    with pytest.raises(ValueError, match="not categories"):
        scorer.fit([_cells(("HSIL", 0.9))], ["cancer"])
    with pytest.raises(ValueError, match="class_scores has 2 columns"):
        scorer.score(_cells(("HSIL", 0.9), class_scores=[[0.1, 0.9]]))
