"""What is installed, what works, and what to do about each missing piece (``cytolt doctor``).

Packages are probed by name (``importlib``), so the doctor imports even when they are broken; mmcv's compiled
ops are probed through ``cytolt.mm.ops_check``, since only ``cytolt.mm`` imports the OpenMMLab stack.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One component: ``ok`` is None when the component is optional and absent on purpose (e.g. no GPU)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # any import failure means "not usable"; its message is reported by the caller
        return None
    return getattr(mod, "__version__", "installed")


def _import_error(module: str) -> str:
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, sys.version.split()[0], "" if ok else "use Python 3.11 or newer")


def check_torch() -> list[Check]:
    version = _version("torch")
    if version is None:
        return [Check("torch", False, _import_error("torch"), "run `make setup`")]
    import torch

    checks = [Check("torch", True, f"{version} ({torch.get_num_threads()} CPU threads)")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("GPU", True, f"CUDA {torch.version.cuda}: {names}"))
    else:
        checks.append(
            Check(
                "GPU",
                None,
                "absent (CPU only)",
                "screening and training run on CPU; a CUDA GPU makes them much faster",
            )
        )
    return checks


def check_mmcv() -> list[Check]:
    version = _version("mmcv")
    if version is None:
        return [Check("mmcv", False, _import_error("mmcv"), "run `make setup` (builds mmcv 2.1.0 once)")]
    try:
        # Imported here, not at the top: a broken mmcv (or mmdet, which cytolt.mm loads) is what the doctor
        # reports, so it must not stop the doctor from importing.
        from cytolt.mm.ops_check import mmcv_ops

        ops = mmcv_ops()
    except Exception as exc:
        return [
            Check(
                "mmcv ops",
                False,
                f"{version}, ops missing: {exc}",
                "rebuild: rm the cached wheel, make setup",
            )
        ]
    import torch

    detail = f"{version}, ops: {ops.device} (compiled with {ops.compiler}, CUDA {ops.cuda})"
    fix = ""
    if ops.device == "CPU" and torch.cuda.is_available():
        fix = "a GPU is present but mmcv has CPU ops only: delete the cached wheel and run `make setup` on this machine"
    return [Check("mmcv", True, detail, fix)]


def check_package(module: str, name: str | None = None, fix: str = "run `make setup`") -> Check:
    version = _version(module)
    if version is None:
        return Check(name or module, False, _import_error(module), fix)
    return Check(name or module, True, str(version))


def check_openslide() -> Check:
    try:
        import openslide
    except Exception as exc:
        return Check(
            "openslide", False, f"{type(exc).__name__}: {exc}", "pip install openslide-python openslide-bin"
        )
    return Check(
        "openslide",
        True,
        f"openslide-python {openslide.__version__}, library {openslide.__library_version__}",
    )


def check_napari() -> list[Check]:
    checks = [check_package("napari", fix="pip install -e '.[napari]' (or `make setup`)")]
    qt = check_package("qtpy", "Qt binding", fix="pip install 'napari[pyqt5]'")
    if qt.ok:
        try:
            # By name, like every optional package the doctor probes: cytolt itself never imports Qt.
            qtpy = importlib.import_module("qtpy")
            qt = Check("Qt binding", True, f"{qtpy.API_NAME} {qtpy.QT_VERSION}")
        except Exception as exc:
            qt = Check("Qt binding", False, str(exc), "pip install 'napari[pyqt5]'")
    checks.append(qt)
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    xvfb = shutil.which("Xvfb")
    if display:
        checks.append(Check("display", True, f"DISPLAY={display}"))
    elif xvfb:
        checks.append(Check("display", None, f"no DISPLAY; Xvfb at {xvfb}", "viewer tests run under Xvfb"))
    else:
        checks.append(
            Check(
                "display",
                False,
                "no DISPLAY and no Xvfb",
                "to use napari headless: apt-get install xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0",
            )
        )
    return checks


def check_slide(path: str | os.PathLike[str]) -> Check:
    """Which reader ``open_slide(path)`` uses for a slide file and why, with the slide's format and size."""
    from pathlib import Path

    from cytolt.io import SlideError, open_slide
    from cytolt.io.backends import explain_backend

    name = f"slide {Path(path).name}"
    try:
        with open_slide(path) as slide:
            reason = explain_backend(Path(path)).reason
            w, h = slide.dimensions
            mpp = "no mpp" if slide.mpp is None else f"{slide.mpp[0]:.4g} um/px"
            levels = f"{slide.level_count} level{'s' if slide.level_count > 1 else ''}"
            detail = f"read with {slide.backend}: {reason} ({slide.vendor}, {w}x{h}, {levels}, {mpp})"
    except SlideError as exc:
        return Check(name, False, str(exc), "convert it to OME-TIFF or SVS, or check the file is complete")
    return Check(name, True, detail)


def run_checks(slides: Sequence[str | os.PathLike[str]] = ()) -> list[Check]:
    """Every check, in the order ``cytolt doctor`` prints them, then one per file in ``slides`` (which reader
    opens it and why). Imports nothing at module level."""
    checks = [check_python(), *check_torch(), check_package("torchvision")]
    checks += check_mmcv()
    checks += [check_package("mmengine"), check_package("mmdet")]
    from cytolt._compat import patch_numpy_for_lvis

    patch_numpy_for_lvis()
    checks += [check_package("lvis"), check_package("pycocotools")]
    checks += [
        check_openslide(),
        check_package("tifffile"),
        check_package("imagecodecs"),
        check_package("zarr"),
    ]
    checks += [check_package("albumentations")]
    checks += check_napari()
    checks += [check_package("dask", fix="pip install -e '.[dask]' (needed for `cytolt screen --workers`)")]
    if slides:
        checks += [check_slide(path) for path in slides]
    else:
        checks.append(
            Check(
                "slide reader",
                None,
                "auto: tifffile wherever it decodes the same pixels as OpenSlide (it is faster), else OpenSlide",
                "`cytolt doctor SLIDE...` says which reader opens each file and why",
            )
        )
    return checks
