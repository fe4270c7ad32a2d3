"""Tests of cytolt.screen.second_stage: candidates, combination, class tables, and the stage inside screen_slide.

The classifier is a stand-in that answers a known probability matrix (and records the boxes it was asked
about), so every expected number below is worked out by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cytolt.aggregate import ScoreCalibration, SlideScorer
from cytolt.detect import Detections, ModelInfo
from cytolt.report import slide_report, validate_report, write_html
from cytolt.screen.engine import default_scorer, screen_slide
from cytolt.screen.second_stage import (
    Rescored,
    SecondStage,
    candidate_order,
    class_map,
    combine_scores,
    load_second_stage,
    rescore_cells,
)
from cytolt.screen.settings import InvalidSetting, ScreenSettings
from cytolt.store.store import detection_keys
from cytolt.synth import CLASSES, make_slide

sys.path.insert(0, str(Path(__file__).parent))
from _classifier_folder import CROP_SIZE, write_classifier  # noqa: E402
from _screen_oracle import OracleDetector  # noqa: E402

NAMES = ("normal", "ascus", "hsil")  # ascus and hsil are abnormal (cytolt.bethesda.ABNORMAL)


class StandIn:
    """A classifier answering ``probs`` row by row (in its own class order), whatever the crops show."""

    def __init__(
        self, probs: np.ndarray, class_names: tuple[str, ...] = NAMES, *, read: bool = False
    ) -> None:
        self.probs = np.asarray(probs, dtype=np.float32)
        self.class_names = class_names
        self.mpp, self.crop_size, self.context = 0.5, 32, 1.5
        self.read = read  # read each box's pixels from the slide, as a real classifier does
        self.asked: list[np.ndarray] = []

    def predict_boxes(self, slide, boxes_level0: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes_level0)
        self.asked.append(boxes.copy())
        if self.read:
            for x0, y0, x1, y1 in boxes:
                region = slide.read_region(
                    (int(x0), int(y0)), 0, (max(1, int(x1 - x0)), max(1, int(y1 - y0)))
                )
                assert region.ndim == 3 and region.shape[2] == 3
        return np.resize(self.probs, (len(boxes), self.probs.shape[1]))


class NoSlide:
    """A slide that must not be touched: the stand-in (read=False) never reads, nor may rescore_cells itself."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the slide was touched ({name})")


def cells(P: list[list[float]]) -> Detections:
    """Cells at distinct places with class probabilities P, label/score from P, in the given order."""
    P_ = np.asarray(P, dtype=np.float32)
    boxes = np.array([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(len(P_))])
    return Detections(boxes=boxes, scores=P_.max(1), labels=P_.argmax(1), class_scores=P_)


# ------------------------------------------------------------------------------------------------ pure parts
def test_candidate_order_abnormal_first_then_best_score_then_detector_order() -> None:
    abnormal = np.array([0.2, 0.9, 0.2, 0.9, 0.0])
    best = np.array([0.5, 0.9, 0.8, 0.95, 0.99])
    # 0.9 twice: cell 3 (best 0.95) before cell 1 (0.9); 0.2 twice: cell 2 (0.8) before cell 0 (0.5); cell 4 last
    assert candidate_order(abnormal, best).tolist() == [3, 1, 2, 0, 4]
    # full ties keep the detector's order
    assert candidate_order(np.zeros(3), np.ones(3)).tolist() == [0, 1, 2]
    assert candidate_order(np.zeros(0), np.zeros(0)).tolist() == []


def test_combine_replace_and_arithmetic_mean() -> None:
    det = np.array([[0.6, 0.3, 0.0], [0.0, 0.0, 0.9]])
    cls_ = np.array([[0.2, 0.2, 0.6], [0.5, 0.5, 0.0]])
    assert np.array_equal(combine_scores(det, cls_, "replace"), cls_)
    # (0.6 + 0.2) / 2 = 0.4, (0.3 + 0.2) / 2 = 0.25, (0 + 0.6) / 2 = 0.3; row 2: 0.25, 0.25, 0.45
    np.testing.assert_allclose(combine_scores(det, cls_, "mean"), [[0.4, 0.25, 0.3], [0.25, 0.25, 0.45]])
    with pytest.raises(ValueError, match="combine must be one of 'replace', 'mean'"):
        combine_scores(det, cls_, "geometric")


def test_class_map_by_name_and_mismatches() -> None:
    assert class_map(NAMES, ("hsil", "normal", "ascus")).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match=r"lacks the detector's \['hsil'\]"):
        class_map(NAMES, ("normal", "ascus"), where="cls")
    with pytest.raises(ValueError, match=r"has classes the detector lacks \['lsil'\]"):
        class_map(NAMES, (*NAMES, "lsil"))
    with pytest.raises(ValueError, match="repeat a name"):
        class_map(NAMES, ("normal", "ascus", "hsil", "hsil"))


def test_stage_rejects_bad_options() -> None:
    stand_in = StandIn(np.eye(3))
    with pytest.raises(ValueError, match="top_n must be an integer >= 1"):
        SecondStage(classifier=stand_in, top_n=0)
    with pytest.raises(ValueError, match="combine must be one of"):
        SecondStage(classifier=stand_in, combine="max")
    with pytest.raises(ValueError, match="classifier_top_n"):
        ScreenSettings(classifier_top_n=0)
    with pytest.raises(ValueError, match="classifier_combine"):
        ScreenSettings(classifier_combine="max")
    with pytest.raises(ValueError, match="not a readable folder"):
        ScreenSettings(classifier="/nowhere/classifier")


# ------------------------------------------------------------------------------------------------ rescore_cells
# Five cells (C = normal, ascus, hsil). Abnormal probability without a scorer: max(ascus, hsil).
P5 = [
    [0.90, 0.05, 0.05],  # 0: abnormal 0.05
    [0.10, 0.70, 0.10],  # 1: abnormal 0.70
    [0.20, 0.10, 0.60],  # 2: abnormal 0.60
    [0.30, 0.70, 0.00],  # 3: abnormal 0.70, best 0.70: ties with 1, detector order keeps 1 first
    [0.95, 0.00, 0.00],  # 4: abnormal 0.00
]


def test_replace_rescoring_top_n_others_untouched_and_both_scores_kept() -> None:
    dets = cells(P5)
    Q = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]
    )  # the classifier's answers for the 1st and 2nd crop asked
    stand_in = StandIn(Q)
    stage = SecondStage(classifier=stand_in, top_n=2, combine="replace", name="cls", identity="sha256:x")
    out, rescored = rescore_cells(NoSlide(), dets, NAMES, stage)
    # candidates: 1 and 3 (abnormal 0.70), then 2 (0.60); top 2 = cells 1, 3, asked in that order
    np.testing.assert_array_equal(stand_in.asked[0], dets.boxes.numpy()[[1, 3]])
    # cell 1 -> normal 0.8; cell 3 -> hsil 0.8. Scores after: 0:0.90 1:0.80 2:0.60 3:0.80 4:0.95
    # sorted (stable): 4, 0, 1, 3, 2
    order = [4, 0, 1, 3, 2]
    np.testing.assert_array_equal(out.boxes.numpy(), dets.boxes.numpy()[order])
    np.testing.assert_allclose(out.scores.numpy(), [0.95, 0.90, 0.80, 0.80, 0.60], atol=1e-7)
    assert out.labels.tolist() == [0, 0, 0, 2, 2]
    np.testing.assert_allclose(out.class_scores.numpy()[[2, 3]], Q, atol=1e-7)
    # cells beyond the top 2 keep the detector's rows, labels and scores exactly
    for new_row, old_row in ((0, 4), (1, 0), (4, 2)):
        assert torch.equal(out.class_scores[new_row], dets.class_scores[old_row])
        assert out.labels[new_row] == dets.labels[old_row] and out.scores[new_row] == dets.scores[old_row]
    # both scores: rows (in the returned order) of cells 1 and 3, their detector and classifier rows
    assert rescored.indices.tolist() == [2, 3]
    np.testing.assert_allclose(rescored.detector_scores, np.asarray(P5)[[1, 3]], atol=1e-7)
    np.testing.assert_allclose(rescored.classifier_scores, Q, atol=1e-7)
    assert rescored.labels_changed() == 2  # ascus -> normal, ascus -> hsil
    assert rescored.stage["top_n"] == 2 and rescored.stage["classifier"]["identity"] == "sha256:x"


def test_mean_rescoring_with_a_classifier_in_another_class_order() -> None:
    dets = cells(P5)
    # the classifier's classes in the order hsil, normal, ascus; its answer for the first crop asked
    stand_in = StandIn(np.array([[0.5, 0.3, 0.2]]), class_names=("hsil", "normal", "ascus"))
    stage = SecondStage(classifier=stand_in, top_n=1, combine="mean")
    out, rescored = rescore_cells(NoSlide(), dets, NAMES, stage)
    # top 1 = cell 1, det (0.1, 0.7, 0.1), classifier in detector order (0.3, 0.2, 0.5):
    # mean (0.2, 0.45, 0.3) -> ascus 0.45; scores 0.90 0.45 0.60 0.70 0.95 -> order 4, 0, 3, 2, 1
    np.testing.assert_allclose(rescored.classifier_scores, [[0.3, 0.2, 0.5]], atol=1e-7)
    np.testing.assert_allclose(out.class_scores.numpy()[4], [0.2, 0.45, 0.3], atol=1e-7)
    assert out.labels[4] == 1 and out.scores[4] == pytest.approx(0.45)
    # the classifier's own class (hsil) differs from the detector's (ascus), though the mean keeps ascus
    assert rescored.indices.tolist() == [4] and rescored.labels_changed() == 1


def test_the_scorer_defines_the_abnormal_probability() -> None:
    # A: ascus 0.4 + hsil 0.4 (sum 0.8, max 0.4); B: hsil 0.6 (sum 0.6, max 0.6)
    dets = cells([[0.1, 0.4, 0.4], [0.3, 0.0, 0.6]])
    for score_type, first in (("sigmoid", 1), ("softmax", 0)):
        scorer = SlideScorer(
            class_names=NAMES,
            abnormal_classes=("ascus", "hsil"),
            calibration=ScoreCalibration(score_type=score_type),
        )
        stand_in = StandIn(np.array([[1.0, 0.0, 0.0]]))
        rescore_cells(NoSlide(), dets, NAMES, SecondStage(classifier=stand_in, top_n=1), scorer=scorer)
        np.testing.assert_array_equal(stand_in.asked[0], dets.boxes.numpy()[[first]])


def test_class_mismatch_fails_before_the_slide_is_read() -> None:
    stand_in = StandIn(np.eye(2), class_names=("normal", "ascus"))
    with pytest.raises(ValueError, match="lacks the detector's"):
        rescore_cells(NoSlide(), cells(P5), NAMES, SecondStage(classifier=stand_in))
    assert not stand_in.asked


def test_bad_classifier_output_is_an_error() -> None:
    wrong_width = SecondStage(classifier=StandIn(np.ones((1, 3)) / 3, class_names=NAMES))
    wrong_width.classifier.probs = np.ones((1, 2), np.float32)  # answers 2 columns for 3 classes
    with pytest.raises(ValueError, match=r"shape \(5, 2\) for 5 crops and 3 classes"):
        rescore_cells(NoSlide(), cells(P5), NAMES, wrong_width)
    negative = SecondStage(classifier=StandIn(np.array([[1.5, -0.5, 0.0]])))
    with pytest.raises(ValueError, match="not probabilities"):
        rescore_cells(NoSlide(), cells(P5), NAMES, negative)


def test_no_cells_nothing_read() -> None:
    stand_in = StandIn(np.eye(3))
    out, rescored = rescore_cells(
        NoSlide(), Detections.empty(num_classes=3), NAMES, SecondStage(classifier=stand_in)
    )
    assert len(out) == 0 and len(rescored) == 0 and not stand_in.asked


def test_rescored_round_trip_through_report_keys() -> None:
    out, rescored = rescore_cells(
        NoSlide(), cells(P5), NAMES, SecondStage(classifier=StandIn(np.eye(3)[[2, 0]]), top_n=2)
    )
    arr = out.numpy()
    keys = detection_keys(arr["boxes"], arr["labels"])
    block = rescored.to_dict(keys, seconds=0.25)
    assert block["cells_rescored"] == 2 and block["seconds"] == 0.25 and block["combine"] == "replace"
    back = Rescored.from_dict(block, keys)
    assert back.indices.tolist() == rescored.indices.tolist()
    np.testing.assert_allclose(back.detector_scores, rescored.detector_scores, atol=1e-6)
    np.testing.assert_allclose(back.classifier_scores, rescored.classifier_scores, atol=1e-6)
    with pytest.raises(ValueError, match="not among the slide's detections"):
        Rescored.from_dict(block, keys[:1] + ["0:0:0:1:1"] * (len(keys) - 1))


# ------------------------------------------------------------------------------------------------ in screen_slide
@pytest.fixture(scope="module")
def hsil_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "hsil.tiff"
    make_slide(path, size=(1024, 1024), mpp=0.25, seed=5, label="HSIL")
    return path


def test_screen_slide_rescores_and_the_report_shows_both(hsil_slide: Path, tmp_path: Path) -> None:
    oracle = OracleDetector(hsil_slide, tile_size=256, overlap=128, mpp=0.5)
    settings = ScreenSettings(tile_size=256, overlap=128, read_threads=0)
    scorer = default_scorer(oracle.info)
    # the classifier calls every crop it sees hsil with 0.9 (the rest shared evenly)
    row = np.full(len(CLASSES), 0.1 / (len(CLASSES) - 1), dtype=np.float32)
    row[CLASSES.index("hsil")] = 0.9
    stand_in = StandIn(row[None], class_names=tuple(CLASSES), read=True)
    stage = SecondStage(classifier=stand_in, top_n=5, name="stand-in")
    plain = screen_slide(hsil_slide, oracle, settings, scorer=scorer)
    oracle.close()
    oracle = OracleDetector(hsil_slide, tile_size=256, overlap=128, mpp=0.5)
    result = screen_slide(hsil_slide, oracle, settings, scorer=scorer, second_stage=stage)
    oracle.close()
    assert plain.second_stage is None and plain.timings["classify"] < 0.01
    assert len(result.detections) == len(plain.detections) > 5
    rescored = result.second_stage
    assert rescored is not None and len(rescored) == 5 and len(stand_in.asked[0]) == 5
    hsil = CLASSES.index("hsil")
    assert (result.detections.labels[torch.from_numpy(rescored.indices)] == hsil).all()
    assert result.timings["classify"] > 0 and "classify" in result.timings
    # the re-scored cells are the plain run's five most abnormal ones (max over the abnormal classes)
    P = plain.detections.class_scores.numpy()
    abnormal = P[:, [CLASSES.index(c) for c in scorer.abnormal_classes]].max(1)
    expected = candidate_order(abnormal, P.max(1))[:5]
    np.testing.assert_allclose(rescored.detector_scores, P[expected], atol=1e-6)

    report = slide_report(result, class_names=CLASSES)
    validate_report(report)
    block = report["second_stage"]
    assert block["cells_rescored"] == 5 and block["top_n"] == 5 and block["combine"] == "replace"
    assert block["classifier"]["name"] == "stand-in" and block["seconds"] == pytest.approx(
        result.timings["classify"], abs=1e-6
    )
    assert report["timings"]["classify"] > 0
    keys = {c["key"] for c in block["cells"]}
    shown = [c for cells_ in report["top_cells"].values() for c in cells_] + report["evidence"]
    both = [c for c in shown if c["key"] in keys]
    assert both and all(c["classifier_score"] == pytest.approx(0.9, abs=1e-6) for c in both)
    assert all("detector_score" in c and c["detector_class"] in CLASSES for c in both)
    assert all("classifier_score" not in c for c in shown if c["key"] not in keys)
    assert slide_report(plain, class_names=CLASSES)["second_stage"] is None
    page = write_html(report, hsil_slide, tmp_path / "report.html").read_text()
    assert "Second stage: cell classifier" in page and "classifier 0.90" in page


def test_screen_slide_class_mismatch_fails_before_opening(tmp_path: Path) -> None:
    stand_in = StandIn(np.eye(2), class_names=("intermediate", "hsil"))

    class Detector:
        info = ModelInfo(classes=tuple(CLASSES), mpp=0.5, path=Path("d"))
        device = torch.device("cpu")

        def predict(self, images):
            raise AssertionError("the detector ran")

    with pytest.raises(ValueError, match="class table does not match"):
        # the slide does not exist: opening it would raise SlideError, so the check came first
        screen_slide(
            tmp_path / "missing.tiff",
            Detector(),
            ScreenSettings(),
            second_stage=SecondStage(classifier=stand_in),
        )


# ------------------------------------------------------------------------------------------------ a real classifier
@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_classifier(tmp_path_factory.mktemp("cls") / "cells")


def test_settings_read_the_folder_and_its_identity_is_the_result_key(
    classifier: Path, tmp_path: Path
) -> None:
    plain = ScreenSettings()
    settings = ScreenSettings(classifier=classifier, classifier_top_n=50, classifier_combine="mean")
    assert settings.classifier == str(classifier.absolute()) and settings.classifier_classes == tuple(CLASSES)
    assert settings.classifier_identity.startswith("sha256:")
    extra = {k: v for k, v in settings.identity().items() if k not in plain.identity()}
    assert extra == {
        "classifier": settings.classifier_identity,
        "classifier_top_n": 50,
        "classifier_combine": "mean",
    }
    # the same weights elsewhere are the same classifier; other weights are another
    import shutil

    copy = shutil.copytree(classifier, tmp_path / "copy")
    assert ScreenSettings(classifier=copy).classifier_identity == settings.classifier_identity
    weights = next(p for p in copy.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    assert ScreenSettings(classifier=copy).classifier_identity != settings.classifier_identity
    # for_model checks the class table: the synthetic model's passes, another's is refused naming the folder
    assert settings.for_model(ModelInfo(classes=tuple(CLASSES), mpp=0.5)).classifier == settings.classifier
    with pytest.raises(InvalidSetting, match="class table does not match") as err:
        settings.for_model(ModelInfo(classes=("a", "b"), mpp=0.5))
    assert err.value.field == "classifier" and str(classifier.absolute()) in str(err.value)


def test_screen_slide_with_the_settings_classifier(hsil_slide: Path, classifier: Path) -> None:
    settings = ScreenSettings(
        tile_size=256, overlap=128, read_threads=0, classifier=classifier, classifier_top_n=4
    )
    stage = load_second_stage(settings, "cpu")
    assert stage is load_second_stage(settings, "cpu")  # loaded once per process
    assert stage.name == "cells" and stage.identity == settings.classifier_identity
    assert stage.classifier.crop_size == CROP_SIZE
    oracle = OracleDetector(hsil_slide, tile_size=256, overlap=128, mpp=0.5)
    result = screen_slide(hsil_slide, oracle, settings, scorer=default_scorer(oracle.info))
    oracle.close()
    rescored = result.second_stage
    assert rescored is not None and len(rescored) == 4
    # the classifier's rows are a softmax over the classes of real crops; combine "replace" put them in place
    np.testing.assert_allclose(rescored.classifier_scores.sum(1), 1.0, atol=1e-5)
    rows = torch.from_numpy(rescored.indices)
    np.testing.assert_allclose(
        result.detections.class_scores[rows].numpy(), rescored.classifier_scores, atol=1e-6
    )
    assert rescored.stage["classifier"]["identity"] == settings.classifier_identity


def test_adequacy_counts_the_detectors_cells_whatever_the_classifier_says() -> None:
    """A classifier that calls every squamous cell an organism must not make a slide unsatisfactory (nor the
    reverse): adequacy counts squamous cells from the detector's own labels (Rescored.detector_cells)."""
    from cytolt.adequacy import AdequacyRules, SlideQuality

    names = ("intermediate", "candida", "hsil")
    scorer = SlideScorer(
        class_names=names, abnormal_classes=("hsil",), adequacy=AdequacyRules(min_squamous_cells=3)
    )
    dets = cells([[0.9, 0.05, 0.05]] * 4)  # four well-visualised intermediate cells
    stage = SecondStage(classifier=StandIn(np.array([[0.05, 0.9, 0.05]]), names), top_n=4, combine="replace")
    out, rescored = rescore_cells(NoSlide(), dets, names, stage, scorer=scorer)
    assert out.labels.tolist() == [1, 1, 1, 1]  # the classifier relabelled all four
    quality = SlideQuality(np.array([[0.0, 0.0, 64.0, 64.0]]), np.array([5000.0]), np.array([0.9]))
    alone = scorer.score(dets, quality).adequacy
    relabelled = scorer.score(out, quality).adequacy
    kept = scorer.score(out, quality, adequacy_dets=rescored.detector_cells(out)).adequacy
    assert alone.squamous_cells == 4 and alone.satisfactory
    assert relabelled.squamous_cells == 0 and not relabelled.satisfactory  # what counting after the stage did
    assert kept.squamous_cells == 4 and kept.satisfactory
    restored = rescored.detector_cells(out)
    np.testing.assert_allclose(restored.class_scores.numpy(), dets.class_scores.numpy(), atol=1e-7)
    assert restored.labels.tolist() == [0, 0, 0, 0]
