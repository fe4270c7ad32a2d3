"""Tests of cytolt.report.json_report: report contents, schema validation, privacy."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cytolt.detect import Detections, ModelInfo
from cytolt.report import load_schema, slide_report, validate_report, write_report
from cytolt.screen.engine import SlideResult, failed_result, screen_slide
from cytolt.screen.settings import ScreenSettings
from cytolt.store import DetectionStore
from cytolt.synth import CLASS_COLORS, CLASSES

COLORS = [CLASS_COLORS[c] for c in CLASSES]


def test_schema_ships_in_the_package() -> None:
    files = resources.files("cytolt.report")
    assert files.joinpath("schema/report.schema.json").is_file()
    assert files.joinpath("templates/report.html.j2").is_file()
    assert load_schema()["properties"]["schema_version"] == {"const": 1}


def test_report_of_a_scored_slide(scored_result: SlideResult, tmp_path: Path) -> None:
    report = slide_report(scored_result, class_names=CLASSES, colors=COLORS)
    validate_report(json.loads(json.dumps(report)))  # survives a JSON round trip
    assert report["slide"]["name"] == "slide7.tiff" and report["status"] == "done" and report["error"] is None
    assert report["slide"]["dimensions"] == [1024, 1024] and report["slide"]["mpp"] == [0.25, 0.25]
    assert report["slide"]["backend"] == "tifffile"  # the reader open_slide chose for it
    assert report["tiles"] == {"read": scored_result.tiles_read, "total": scored_result.tiles_total,
                               "size": 256, "overlap": 128, "mpp": [0.5, 0.5]}  # fmt: skip
    labels = scored_result.detections.labels.numpy()
    assert report["detections"]["total"] == len(labels) > 0
    assert report["detections"]["per_class"] == {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    assert {k: sum(v) for k, v in report["score_histogram"]["counts"].items()} == report["detections"][
        "per_class"
    ]
    score = scored_result.score
    assert report["score"]["category"] == score.category == "HSIL+"
    assert report["score"]["slide_score"] == pytest.approx(score.slide_score, abs=1e-6)
    # gallery and evidence come from the scorer (k=4), best first
    for name, cells in report["top_cells"].items():
        assert len(cells) == min(4, report["detections"]["per_class"][name])
        assert all(c["class"] == name for c in cells)
        assert [c["score"] for c in cells] == sorted((c["score"] for c in cells), reverse=True)
    assert [c["score"] for c in report["evidence"]] == pytest.approx(score.evidence_scores, abs=1e-6)
    assert {c["class"] for c in report["evidence"]} <= {"ascus", "lsil", "hsil", "scc", "agc"}
    assert set(report["timings"]) >= {"open", "mask", "read", "model", "merge", "store", "total"}
    assert report["model"] == {
        "name": "oracle",
        "classes": list(CLASSES),
        "colors": [list(c) for c in COLORS],
    }
    # every cell's key finds the same box in the store
    with DetectionStore(tmp_path / "run.sqlite") as store:
        sid = store.add_slide("s")
        store.replace_detections(sid, scored_result.detections, CLASSES)
        cols = store.columns(sid)
    by_key = dict(zip(cols["key"], cols["boxes"].tolist(), strict=True))
    for cell in [c for cells in report["top_cells"].values() for c in cells] + report["evidence"]:
        assert by_key[cell["key"]] == pytest.approx(cell["box"], abs=0.01)


def test_report_without_scorer_ranks_cells_by_score(unscored_result: SlideResult) -> None:
    report = slide_report(unscored_result, top_k=3)
    assert report["score"] is None and report["evidence"] == []
    assert report["model"]["classes"] == list(CLASSES)  # from the result
    scores = unscored_result.detections.scores.numpy()
    labels = unscored_result.detections.labels.numpy()
    for i, name in enumerate(CLASSES):
        best = np.sort(scores[labels == i])[::-1][:3]
        assert [c["score"] for c in report["top_cells"][name]] == pytest.approx(best.tolist(), abs=1e-6)


def test_report_of_a_failed_slide_validates() -> None:
    info = ModelInfo(classes=("a", "b"), mpp=0.5, path=Path("/models/m1"))

    class Stub:
        device = torch.device("cpu")

    stub = Stub()
    stub.info = info  # type: ignore[attr-defined]
    result = failed_result("/data/case 12/x.svs", "/data/case 12/x.svs: file not found", detector=stub)
    report = slide_report(result)
    assert report["status"] == "failed" and report["error"].endswith("file not found")
    assert report["slide"] == {
        "name": "x.svs",
        "vendor": None,
        "backend": None,
        "dimensions": None,
        "mpp": None,
        "mpp_source": None,
    }
    assert report["detections"] == {"total": 0, "per_class": {"a": 0, "b": 0}}
    assert report["model"]["name"] == "m1" and report["top_cells"] == {"a": [], "b": []}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.pop("timings"), "(top level)"),
        (lambda r: r["slide"].update(name="/data/case/x.svs"), "slide/name"),
        (lambda r: r.update(status="maybe"), "status"),
        (lambda r: r["detections"].update(total=-1), "detections/total"),
        (lambda r: r.update(extra=1), "(top level)"),
        (lambda r: r["model"]["colors"].append([0, 0, 256]), "model/colors/11/2"),
        (lambda r: r["top_cells"]["hsil"][0].update(score=1.5), "top_cells/hsil/0/score"),
    ],
    ids=["missing", "folder-in-name", "status", "negative", "extra-field", "colour", "score"],
)
def test_validate_report_names_the_broken_field(scored_result: SlideResult, change, where: str) -> None:
    report = copy.deepcopy(slide_report(scored_result, class_names=CLASSES, colors=COLORS))
    change(report)
    with pytest.raises(ValueError, match="report does not follow report.schema.json at") as info:
        validate_report(report)
    assert f" at {where}:" in str(info.value)


def test_colors_and_class_names_are_checked(scored_result: SlideResult) -> None:
    with pytest.raises(ValueError, match="got 2 colors for 11 classes"):
        slide_report(scored_result, colors=[(0, 0, 0), (1, 1, 1)])
    with pytest.raises(ValueError, match="colors has no entry for classes"):
        slide_report(scored_result, colors={"hsil": (255, 0, 0)})
    with pytest.raises(ValueError, match="has no class name; got 2 names"):
        slide_report(scored_result, class_names=["a", "b"])
    by_name = slide_report(scored_result, colors=CLASS_COLORS)
    assert by_name["model"]["colors"] == [list(c) for c in COLORS]


def test_scores_outside_0_1_are_an_error(scored_result: SlideResult) -> None:
    bad = Detections(boxes=[[0, 0, 10, 10]], scores=[3.0], labels=[0])
    result = SlideResult(path=Path("x.svs"), status="done", detections=bad, class_names=CLASSES)
    with pytest.raises(ValueError, match="scores must be probabilities in \\[0, 1\\]; got 3.0"):
        slide_report(result)


def test_report_never_copies_slide_metadata(tmp_path: Path) -> None:
    """A slide whose description names the patient: the report holds the file name and format, nothing else."""
    path = tmp_path / "Doe_Jane_1970" / "scan.tiff"
    path.parent.mkdir()
    rgb = np.full((512, 512, 3), 240, np.uint8)
    rgb[200:260, 200:260] = (120, 60, 140)
    tifffile.imwrite(
        path, rgb, tile=(256, 256), photometric="rgb", resolution=(40000, 40000), resolutionunit=3,
        description="Patient: Jane Doe; DOB 1970-01-01; MRN 12345",
    )  # fmt: skip

    class Boxes:
        info = ModelInfo(classes=("hsil",), path=Path("m"))
        device = torch.device("cpu")

        def predict(self, images: torch.Tensor) -> list[Detections]:
            return [Detections(boxes=[[10, 10, 50, 50]], scores=[0.9], labels=[0]) for _ in images]

    report = slide_report(screen_slide(path, Boxes(), ScreenSettings(tile_size=256, overlap=0)))
    text = json.dumps(report)
    for secret in ("Jane", "Doe", "MRN", "Patient", "1970-01-01", str(tmp_path)):
        assert secret not in text
    out = write_report(report, tmp_path / "report.json")
    assert json.loads(out.read_text()) == report
