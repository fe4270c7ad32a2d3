"""``cytolt doctor`` reports this machine as it is."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from cytolt.cli import main
from cytolt.doctor import run_checks


def test_checks_match_this_machine():
    checks = {c.name: c for c in run_checks()}
    assert checks["torch"].ok and torch.__version__ in checks["torch"].detail
    if torch.cuda.is_available():
        assert checks["GPU"].ok is True
    else:
        assert checks["GPU"].ok is None and "absent" in checks["GPU"].detail
        assert "ops: CPU" in checks["mmcv"].detail
    for name in ("mmcv", "mmengine", "mmdet", "lvis", "openslide", "tifffile", "zarr"):
        assert checks[name].ok, f"{name}: {checks[name].detail}"
    assert "library" in checks["openslide"].detail


def test_missing_component_says_what_to_do(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "zarr", None)  # makes `import zarr` raise ImportError
    checks = {c.name: c for c in run_checks()}
    assert checks["zarr"].ok is False
    assert "zarr" in checks["zarr"].detail
    assert "make setup" in checks["zarr"].fix


def test_doctor_command_prints_every_component():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    for name in ("torch", "GPU", "mmcv", "mmdet", "openslide", "napari", "display"):
        assert name in result.output
