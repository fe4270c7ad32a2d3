"""Tests of cytolt.bethesda: one vocabulary, and the scorer, report and review queue all speak it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolt import bethesda
from cytolt.adequacy import AdequacyRules, SlideQuality
from cytolt.detect import Detections, ModelInfo
from cytolt.report import slide_report
from cytolt.review import ReviewQueue
from cytolt.screen import SlideResult, default_scorer
from cytolt.store import DetectionStore

# a lab's own class names: other spellings than cytolt.synth's
CLASSES = ("Intermediate", "ASC-US", "HSIL", "Candida", "Low_Grade_LSIL")


def test_names_are_matched_by_their_key() -> None:
    assert bethesda.class_key("ASC-US") == bethesda.class_key("asc_us") == "ascus"
    assert bethesda.classes_in(CLASSES, bethesda.ABNORMAL) == ["ASC-US", "HSIL"]  # "lowgradelsil" is unknown
    assert bethesda.classes_in(CLASSES, bethesda.SQUAMOUS) == ["Intermediate", "ASC-US", "HSIL"]
    assert (
        bethesda.interpretation_of_class("hsil") == "HSIL"
        and bethesda.interpretation_of_class("Candida") is None
    )


def test_severity_and_triage() -> None:
    assert bethesda.more_severe(["ASC-US", "AGC", "LSIL"]) == "AGC" and bethesda.more_severe([]) == "NILM"
    assert [bethesda.triage_call(i) for i in bethesda.INTERPRETATIONS] == [
        "NILM", "ASC-US+", "ASC-US+", "ASC-US+", "ASC-US+", "HSIL+", "HSIL+",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="interpretation must be one of"):
        bethesda.severity("LSIL+")


def test_scorer_report_and_review_queue_use_the_one_vocabulary(tmp_path: Path) -> None:
    info = ModelInfo(classes=CLASSES, path=Path("lab-model"))
    scorer = default_scorer(info, adequacy=AdequacyRules(min_squamous_cells=1))
    assert scorer.abnormal_classes == ["ASC-US", "HSIL"] and [r.name for r in scorer.category_rules] == [
        "HSIL+",
        "ASC-US+",
    ]
    # one intermediate cell, one ASC-US, one HSIL and a Candida, each in the one in-focus tile
    dets = Detections(
        boxes=[[10, 10, 40, 40], [50, 10, 80, 40], [90, 10, 120, 40], [130, 10, 160, 40]],
        scores=[0.9, 0.8, 0.7, 0.9],
        labels=[0, 1, 2, 3],
    )
    quality = SlideQuality(np.array([[0.0, 0.0, 256.0, 256.0]]), np.array([5000.0]), np.array([0.3]))
    score = scorer.score(dets, quality)
    assert (score.triage, score.interpretation, score.findings) == ("HSIL+", "HSIL", ["Candida"])
    assert score.adequacy.squamous_cells == 3  # Intermediate, ASC-US and HSIL are squamous; Candida is not
    result = SlideResult(
        path=tmp_path / "s.svs",
        status="done",
        detections=dets,
        class_names=CLASSES,
        score=score,
        quality=quality,
    )
    report = slide_report(result)
    assert report["interpretation"] == {"bethesda": "HSIL", "triage": "HSIL+", "findings": ["Candida"]}
    with DetectionStore(tmp_path / "run.sqlite") as store:
        sid = store.add_slide(tmp_path / "s.svs")
        store.replace_detections(sid, dets, CLASSES)
        queue = ReviewQueue(store, sid)
    # most severe abnormal class first, then organisms, then the rest
    assert queue.classes == ["HSIL", "ASC-US", "Candida", "Intermediate"]
