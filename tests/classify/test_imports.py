"""``cytolt.classify`` stays framework-free: importing it, every submodule and every cytolt module they import
(inside functions too) loads no mmdet, mmengine, mmcv or napari module, in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("mmdet", "mmengine", "mmcv", "napari")
ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "cytolt" / "classify"  # found on disk: this process need not import it


def _submodules() -> list[str]:
    """cytolt.classify and every module below it, from the files (nothing is imported here)."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _cytolt_imports() -> list[str]:
    """Every absolute ``cytolt.*`` module named by an import anywhere in the package's files, function-local
    imports included (``crops_from_run`` imports the store only when called)."""
    found = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return sorted(m for m in found if m.split(".")[0] == "cytolt")


_SCRIPT = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))))
"""


def test_the_submodule_list_sees_the_core_modules() -> None:
    names = _submodules()
    for core in ("crops", "synth_crops", "model", "folder", "metrics", "predict"):
        assert f"cytolt.classify.{core}" in names
    assert "cytolt.datasets.from_review" in _cytolt_imports()  # a function-local import is found


def test_importing_cytolt_classify_loads_no_framework_or_viewer() -> None:
    modules = _submodules() + _cytolt_imports()
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(modules), json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing {len(modules)} modules loaded {loaded}"


def test_the_check_reports_what_was_loaded() -> None:
    # the same script on a harmless module it is told to look for
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(["email.message"]), json.dumps(["email"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "email.message" in json.loads(done.stdout.strip().splitlines()[-1])
