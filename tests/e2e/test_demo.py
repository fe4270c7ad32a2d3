"""`cytolt demo` end to end at toy size: data, slides, a few training iterations, screening, reports."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("mmdet")


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_outputs(tmp_path):
    import torch

    from cytolt.cli import main

    torch.set_num_threads(1)
    args = ["demo", "--out", str(tmp_path), "--images", "40", "--slide-size", "1536", "--train-iters", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "slide calls (made with the scorer fit" in result.output
    reports = sorted(tmp_path.glob("run/*/report.json"))
    assert len(reports) == 4  # the three demo slides and the nearly cell-free one
    for path in reports:
        report = json.loads(path.read_text())
        assert report["status"] == "done"
        assert report["score"]["category"] and report["adequacy"]["status"]
    sparse = json.loads((tmp_path / "run" / "sparse_nilm_tiff" / "report.json").read_text())
    assert sparse["score"]["category"] == "Unsatisfactory"  # never NILM
    assert "adequacy: unsatisfactory;" in result.output
    assert (tmp_path / "run" / "summary.csv").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    scorer = json.loads((tmp_path / "model" / "scorer.json").read_text())  # fit on the calibration slides
    assert scorer["class_names"] and set(scorer["thresholds"]) == set(scorer["class_names"])
    assert len(list((tmp_path / "calibration").glob("*.tiff"))) == 8
    assert "(slide made as HSIL)" in result.output

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "[3/5] detector: reusing" in again.output
    assert "[4/5] slide scorer: reusing" in again.output
