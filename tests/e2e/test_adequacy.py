"""Slides that were not adequately examined are called Unsatisfactory through ``cytolt screen``, never NILM.

The detector is the pixel-addressed oracle of the synthetic slides (their planted cells) and, for images no
synthetic slide holds, a stand-in that reports an HSIL cell on every tile with dark pixels: the kind of
detector that called a handful of foreign cells HSIL+. The model's scorer asks for 10 well-visualised squamous
cells (a 2048-px synthetic NILM slide shows about 20 whole, in-tile squamous cells to the oracle).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

import cytolt.detect
from cytolt.adequacy import AdequacyRules
from cytolt.cli.screen import screen
from cytolt.detect import Detections, ModelFolder
from cytolt.screen import default_scorer
from cytolt.synth import CLASSES, cells_path_for, make_slide

sys.path.insert(0, str(Path(__file__).parents[1] / "screen"))
from _tile_oracle import TILE, TileOracle, _key, write_model_dir  # noqa: E402

HSIL = CLASSES.index("hsil")
TILE_ARGS = ["--tile-size", "256", "--overlap", "128", "--read-threads", "0"]


class OracleOrDarkBlobs:
    """Oracle answers for synthetic slides' tiles; elsewhere one HSIL box (score 0.9) per tile with dark pixels."""

    def __init__(self, synthetic: list[Path]) -> None:
        self.oracle = TileOracle(synthetic, **TILE)
        self.info, self.device = self.oracle.info, torch.device("cpu")

    def predict(self, images: torch.Tensor) -> list[Detections]:
        out = []
        for image in images:
            answer = self.oracle.answers.get(_key(image.contiguous().numpy()))
            if answer is None:
                dark = (image.float().mean(0) < 120).nonzero()
                if len(dark):
                    (y0, x0), (y1, x1) = dark.min(0).values.tolist(), dark.max(0).values.tolist()
                    answer = Detections(boxes=[[x0, y0, x1 + 1, y1 + 1]], scores=[0.9], labels=[HSIL])
                else:
                    answer = Detections.empty()
            out.append(answer)
        return out


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adequacy")
    out: dict[str, Path] = {}

    def synth(name: str, **kwargs: object) -> None:
        out[name] = root / f"{name}.tiff"
        make_slide(out[name], size=(2048, 2048), mpp=0.25, workers=1, **kwargs)  # type: ignore[arg-type]

    synth("normal", seed=21, label="NILM")
    synth("blank", seed=22, label="NILM", density=0.0)
    synth("blurred", seed=23, label="NILM", blur="all")
    synth("half_blurred", seed=24, label="NILM", blur="half")
    synth("sparse_hsil", seed=25, label="HSIL", density=0.02, abnormal={"hsil": 4})
    # a handful of cells drawn by hand (not by cytolt.synth) in one corner of a pale glass
    rng = np.random.default_rng(0)
    glass = np.full((2048, 2048, 3), 238, np.uint8)
    import cv2

    for _ in range(5):
        cx, cy = (int(v) for v in rng.integers(80, 400, 2))
        cv2.ellipse(glass, (cx, cy), (30, 22), 0, 0, 360, (205, 150, 170), -1)
        cv2.ellipse(glass, (cx, cy), (7, 6), 0, 0, 360, (60, 40, 90), -1)
    out["handful"] = _tiff(root / "handful.tiff", glass)
    out["one_pixel"] = _tiff(root / "one_pixel.tiff", np.full((1, 1, 3), 120, np.uint8))
    noise = rng.integers(0, 256, (512, 512, 4), dtype=np.uint8)
    out["noise_rgba"] = _tiff(root / "noise_rgba.tiff", noise)
    return out


def _tiff(path: Path, pixels: np.ndarray) -> Path:
    tile = (256, 256) if min(pixels.shape[:2]) >= 256 else None
    photometric = "rgb"
    extra = {"extrasamples": [2]} if pixels.shape[2] == 4 else {}
    tifffile.imwrite(
        path, pixels, tile=tile, photometric=photometric, resolution=(40000, 40000), resolutionunit=3, **extra
    )
    return path


@pytest.fixture(scope="module")
def run(
    slides: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict], str]:
    """One `cytolt screen` over every slide; returns the run folder, each slide's report and stdout."""
    tmp = tmp_path_factory.mktemp("adequacy-run")
    model = write_model_dir(tmp / "model")
    folder = ModelFolder.read(model)
    folder.write_scorer(default_scorer(folder.info, adequacy=AdequacyRules(min_squamous_cells=10)))
    synthetic = [p for p in slides.values() if cells_path_for(p).is_file()]
    detector = OracleOrDarkBlobs(synthetic)
    mp = pytest.MonkeyPatch()
    mp.setattr(cytolt.detect, "load", lambda model_dir, device=None: detector)
    try:
        result = CliRunner().invoke(
            screen, [*map(str, slides.values()), "-o", str(tmp / "run"), "--model", str(model), *TILE_ARGS]
        )
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output  # unsatisfactory slides are done, not failed
    reports = {
        p.stem: json.loads((tmp / "run" / p.stem / "report.json").read_text()) for p in slides.values()
    }
    return tmp / "run", reports, result.stdout


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("blank", "no cellular area found"),
        ("one_pixel", "no cellular area found"),
        ("handful", "well-visualised squamous cells, fewer than the 10 required"),
        ("noise_rgba", "well-visualised squamous cells, fewer than the 10 required"),
        ("blurred", "of the cellular area is out of focus"),
        ("sparse_hsil", "well-visualised squamous cells, fewer than the 10 required"),
    ],
)
def test_inadequate_slides_are_unsatisfactory_with_the_reason(run, name: str, reason: str) -> None:
    _, reports, stdout = run
    report = reports[name]
    assert report["status"] == "done" and report["score"]["category"] == "Unsatisfactory"
    assert report["adequacy"]["status"] == "unsatisfactory"
    assert any(reason in r for r in report["adequacy"]["reasons"]), report["adequacy"]["reasons"]
    line = next(x for x in stdout.splitlines() if f" {name}.tiff:" in x)
    assert "Unsatisfactory" in line and reason.split(":")[0] in line and "NILM (score" not in line


def test_a_normal_slide_stays_satisfactory_and_negative(run) -> None:
    _, reports, _ = run
    report = reports["normal"]
    assert report["adequacy"]["status"] == "satisfactory" and report["score"]["category"] == "NILM"
    assert report["adequacy"]["squamous_cells"] >= 10 and report["interpretation"]["bethesda"] == "NILM"


def test_abnormal_cells_on_an_unsatisfactory_slide_are_still_listed(run, slides) -> None:
    run_dir, reports, stdout = run
    report = reports["sparse_hsil"]
    truth = json.loads(cells_path_for(slides["sparse_hsil"]).read_text())
    assert truth["squamous_cells"] < 10 and sum(c["class"] == "hsil" for c in truth["cells"]) == 4
    assert report["score"]["category"] == "Unsatisfactory" and report["interpretation"]["bethesda"] == "HSIL"
    assert report["interpretation"]["triage"] == "HSIL+" and len(report["top_cells"]["hsil"]) == 4
    assert "abnormal cells seen: HSIL" in next(x for x in stdout.splitlines() if "sparse_hsil" in x)
    page = (run_dir / "sparse_hsil" / "report.html").read_text()
    assert "unsatisfactory, but abnormal cells seen" in page
    with open(run_dir / "summary.csv") as fh:
        row = next(r for r in fh if r.startswith("sparse_hsil.tiff"))
    assert "Unsatisfactory" in row and "unsatisfactory: " in row


def test_a_half_blurred_slide_shows_about_half_its_cellular_area_out_of_focus(run, slides) -> None:
    run_dir, reports, _ = run
    truth = json.loads(cells_path_for(slides["half_blurred"]).read_text())
    measured = reports["half_blurred"]["focus"]["out_of_focus_fraction"]
    assert abs(measured - truth["blurred_cellular_fraction"]) < 0.15, (
        measured,
        truth["blurred_cellular_fraction"],
    )
    assert reports["normal"]["focus"]["out_of_focus_fraction"] < 0.05
    assert reports["blurred"]["focus"]["out_of_focus_fraction"] > 0.95
    assert "focus heat map" in (run_dir / "half_blurred" / "report.html").read_text()
