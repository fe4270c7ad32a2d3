"""scripts/screening_study.py at toy size: a dozen 1024-px slides screened by the tile oracle (a detector that
reports the planted cells), every output written, and a second run that reuses every slide and the scorer fit."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import cytolt.detect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "screen"))  # the oracles import each other by module name
from _tile_oracle import write_model_dir  # noqa: E402


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("screening_study", ROOT / "scripts" / "screening_study.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_study_end_to_end_and_resumed(tmp_path, monkeypatch):
    import torch
    from _tile_oracle import TileOracle

    torch.set_num_threads(1)
    study_module = load_script(monkeypatch)
    work, out = tmp_path / "work", tmp_path / "out"
    model_dir = write_model_dir(tmp_path / "model")
    given = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    def oracle(model, device=None):  # every slide the study wrote, as the screening settings tile them
        return TileOracle(sorted(work.rglob("*.tiff")), tile_size=512, overlap=128, mpp=0.5)

    monkeypatch.setattr(cytolt.detect, "load", oracle)
    argv = ["--test-slides", "12", "--calibration-slides", "6", "--slide-size", "1024", "--n-boot", "50"]
    argv += ["--work-root", str(work), "--out", str(out), "--model", str(model_dir), "--quiet"]
    study = study_module.main(argv)

    for name in ("screening.md", "screening.json", "screening_roc.png", "screening_kinds.png"):
        assert (out / name).is_file(), name
    page = (out / "screening.md").read_text()
    assert study_module.READING_MARKER in page and "Not the study's default run" in page
    assert json.loads((out / "screening.json").read_text())["setup"]["test_slides"] == 12
    # the scorer is fit on the study's copy of the model: the folder given is untouched
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == given

    figures = study["figures"]
    assert set(figures["cutoffs"]) >= {"ASC-US+", "LSIL+", "HSIL+", "n", "excluded_unsatisfactory"}
    assert figures["cutoffs"]["n"] + figures["cutoffs"]["excluded_unsatisfactory"] == 12
    # the oracle reports every planted cell with its own box: each abnormal slide's queue starts with one
    gallery = figures["gallery"]["abnormal slides"]["10"]
    assert gallery["n"] > 0 and gallery["value"] == 1.0
    assert figures["cutoffs"]["ASC-US+"]["sensitivity"]["value"] == 1.0
    assert study["cost"]["review_items_per_slide"]["mean"] > 0
    assert study["cost"]["this_run"]["screened"] == 12

    again = study_module.main(argv)  # nothing generated, fit or screened again
    assert again["cost"]["this_run"]["screened"] == 0
    assert again["generation_seconds_per_slide"] == "all reused"
    assert again["figures"]["cutoffs"] == figures["cutoffs"]


def test_a_relative_work_root_is_made_absolute(monkeypatch, tmp_path):
    """The store keeps absolute slide paths; with a relative --work-root every review-queue lookup missed."""
    study = load_script(monkeypatch)
    monkeypatch.chdir(tmp_path)
    args = study.parse_args(["--work-root", "rel/work", "--test-slides", "300"])
    assert args.work_root == tmp_path / "rel" / "work" and args.work_root.is_absolute()
