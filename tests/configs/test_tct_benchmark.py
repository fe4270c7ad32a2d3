"""scripts/tct_benchmark.py: every method it can run has its CPU config (the script fails on a missing one only
after the runs before it have trained)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("tct_benchmark", ROOT / "scripts" / "tct_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_has_a_cpu_config_and_runs_by_default():
    bench = _script()
    for method in bench.METHODS:
        assert (ROOT / "configs" / "tct" / f"retinanet_r18_{method}.py").is_file(), method
    assert bench.parse_args([]).methods.split(",") == list(bench.METHODS)
    assert {"gol", "iif", "pcb"} <= set(bench.METHODS)
