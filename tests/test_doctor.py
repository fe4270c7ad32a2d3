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


def test_doctor_says_which_reader_opens_each_slide(tmp_path, openslide_fixtures):
    from cytolt.synth import make_slide

    svs = make_slide(tmp_path / "scan.svs", size=(512, 384), format="aperio").path
    dicom = openslide_fixtures / "boxes_0.dcm"
    result = CliRunner().invoke(main, ["doctor", str(svs), str(dicom)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("slide ")}
    assert "read with tifffile" in lines["scan.svs"] and "same pixels as OpenSlide" in lines["scan.svs"]
    assert "read with openslide" in lines["boxes_0.dcm"] and "not a TIFF" in lines["boxes_0.dcm"]


def test_doctor_fails_on_a_slide_it_cannot_open(tmp_path):
    missing = tmp_path / "gone.svs"
    checks = {c.name: c for c in run_checks([missing])}
    assert checks["slide gone.svs"].ok is False and "not found" in checks["slide gone.svs"].detail
    result = CliRunner().invoke(main, ["doctor", str(missing)])
    assert result.exit_code == 1 and "gone.svs" in result.output
