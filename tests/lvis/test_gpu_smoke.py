"""scripts/lvis/gpu_smoke.sh: parses, refuses without CUDA, and (on a CUDA machine) runs end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lvis" / "gpu_smoke.sh"


def test_gpu_smoke_script_parses():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_smoke_refuses_without_cuda(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 3 and "needs a CUDA device" in done.stderr
    assert not (tmp_path / "out" / "mmcv_build.log").exists()  # nothing was built


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_smoke_runs_end_to_end(tmp_path):
    """Builds mmcv's CUDA ops, trains two configs 50 iterations with AMP and evaluates them (tens of minutes)."""
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT
    )
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert done.returncode == 0, summary
    assert "RoIAlign and NMS run on CUDA" in summary and summary.count("evaluated in") == 2
