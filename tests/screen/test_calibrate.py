"""Tests of cytolt/screen/calibrate.py: fitting a model's slide scorer on labelled slides."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import cytolt.detect
from cytolt.aggregate import SlideScorer
from cytolt.detect import Detections
from cytolt.screen import ScreenSettings, screen_slides
from cytolt.screen.calibrate import BETHESDA_CATEGORIES, category_for, fit_slide_scorer
from cytolt.screen.engine import default_scorer
from cytolt.store import DetectionStore
from cytolt.synth import CLASSES, make_slide

sys.path.insert(0, str(Path(__file__).parent))  # the oracles import each other by module name
from _screen_oracle import OracleSequence  # noqa: E402
from _tile_oracle import write_model_dir  # noqa: E402

TILE = ScreenSettings(tile_size=256, overlap=128, batch_size=4, read_threads=1)
LABELS = ("NILM", "HSIL", "LSIL", "NILM")


class DimOracle:
    """The oracle with every score multiplied by ``factor``: a detector whose scores sit below 0.5."""

    def __init__(self, oracle: OracleSequence, factor: float) -> None:
        self.oracle, self.factor = oracle, factor
        self.info, self.device = oracle.info, oracle.device

    def predict(self, images: torch.Tensor) -> list[Detections]:
        return [
            Detections(
                boxes=d.boxes,
                scores=d.scores * self.factor,
                labels=d.labels,
                class_scores=None if d.class_scores is None else d.class_scores * self.factor,
            )
            for d in self.oracle.predict(images)
        ]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("calib-slides")
    out = []
    for i, label in enumerate(LABELS):
        out.append(folder / f"{label.lower()}_{i}.tiff")
        make_slide(out[-1], size=(1024, 1024), mpp=0.25, seed=30 + i, label=label)
    return out


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")  # model.json with mpp 0.5; `load` is patched per test


def _use_dim_oracle(monkeypatch: pytest.MonkeyPatch, screened: list[Path], factor: float = 0.5) -> None:
    oracle = OracleSequence(screened, tile_size=256, overlap=128, mpp=0.5)
    monkeypatch.setattr(cytolt.detect, "load", lambda model_dir, device=None: DimOracle(oracle, factor))


def test_fit_moves_thresholds_to_where_the_scores_are(slides, model_dir, tmp_path, monkeypatch) -> None:
    _use_dim_oracle(monkeypatch, slides)  # scores 0.28-0.48: the default 0.5 threshold sees nothing
    fit = fit_slide_scorer(slides, list(LABELS), model_dir, tmp_path / "calib", settings=TILE)

    assert fit.categories == ["NILM", "HSIL+", "ASC-US+", "NILM"]
    assert fit.calls_before == ["NILM"] * 4
    assert fit.calls_after == fit.categories and fit.accuracy == 1.0
    assert fit.report["hsil"]["sensitivity"] == 1.0 and fit.report["hsil"]["specificity"] == 1.0
    assert 0.0 < fit.scorer.thresholds["hsil"] < 0.5 and 0.0 < fit.scorer.thresholds["lsil"] < 0.5
    assert "kept" in fit.report["scc"]  # no slide carries scc cells: nothing to fit on
    assert fit.scorer.thresholds["scc"] == 0.5

    # saved beside the model, and screen_slides uses it without being told
    assert fit.path == model_dir / "scorer.json"
    saved = SlideScorer.from_dict(json.loads(fit.path.read_text()))
    assert saved.thresholds == fit.scorer.thresholds
    _use_dim_oracle(monkeypatch, slides[:2])
    summary = screen_slides(slides[:2], model_dir, tmp_path / "run", TILE)
    assert [r.score.category for r in summary.results] == ["NILM", "HSIL+"]
    with DetectionStore(summary.store_path) as store:
        assert store.runs()[-1]["params"]["scorer"]["thresholds"] == fit.scorer.thresholds


def test_a_refit_starts_from_the_default_scorer(slides, model_dir, tmp_path, monkeypatch) -> None:
    # A stale scorer.json with absurd thresholds must not leak into the refit's "before" calls.
    stale = default_scorer(cytolt.detect.ModelFolder.read(model_dir).info)
    stale.thresholds = dict.fromkeys(stale.thresholds, 0.0)
    (model_dir / "scorer.json").write_text(json.dumps(stale.to_dict()))
    _use_dim_oracle(monkeypatch, slides, factor=1.0)
    fit = fit_slide_scorer(slides, list(LABELS), model_dir, tmp_path / "calib", save=False, settings=TILE)
    assert fit.calls_before == fit.categories  # the oracle's own scores pass 0.5
    assert fit.path is None
    assert json.loads((model_dir / "scorer.json").read_text())["thresholds"]["hsil"] == 0.0


def test_a_failed_slide_stops_the_fit_and_is_named(slides, model_dir, tmp_path, monkeypatch) -> None:
    _use_dim_oracle(monkeypatch, slides[:1])
    missing = tmp_path / "gone.svs"
    before = (model_dir / "scorer.json").read_bytes()
    with pytest.raises(ValueError, match=r"gone\.svs"):
        fit_slide_scorer([slides[0], missing], ["NILM", "HSIL"], model_dir, tmp_path / "calib", settings=TILE)
    assert (model_dir / "scorer.json").read_bytes() == before  # the model's scorer is left as it was


def test_labels_are_checked_before_any_screening(slides, model_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="2 slides and 1 labels"):
        fit_slide_scorer(slides[:2], ["NILM"], model_dir, tmp_path / "calib")
    with pytest.raises(ValueError, match="'cancer' is neither a category"):
        fit_slide_scorer(slides[:2], ["NILM", "cancer"], model_dir, tmp_path / "calib")
    assert not (tmp_path / "calib").exists()


def test_category_for_maps_every_bethesda_label() -> None:
    scorer = SlideScorer(class_names=CLASSES, abnormal_classes=["ascus", "lsil", "hsil", "scc", "agc"])
    assert {lab: category_for(lab, scorer) for lab in BETHESDA_CATEGORIES} == BETHESDA_CATEGORIES
    assert category_for("HSIL+", scorer) == "HSIL+"
