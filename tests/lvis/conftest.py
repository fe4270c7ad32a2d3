"""Fixtures for the LVIS reproduction tests: the scripts in scripts/lvis (not a package) and one mini LVIS set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "lvis"


def load_script(name: str) -> ModuleType:
    """Import scripts/lvis/<name>.py once (the scripts import each other the same way)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def make_mini() -> ModuleType:
    return load_script("make_mini_lvis")


@pytest.fixture(scope="session")
def lvis_tools() -> ModuleType:
    return load_script("lvis_tools")


@pytest.fixture(scope="session")
def mini_lvis(tmp_path_factory, make_mini) -> tuple[Path, dict]:
    """The default mini set (12 classes, 8 train + 4 val images of 128 px, seed 0) and its summary."""
    root = tmp_path_factory.mktemp("mini_lvis")
    summary = make_mini.make_mini_lvis(root, num_classes=12, train_images=8, val_images=4, size=128, seed=0)
    return root, summary
