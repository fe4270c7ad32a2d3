"""scripts/tct_grid.py: every planned run has its config, the order the issue asks for, and a config hash that
follows the config and its options (the resume key)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("tct_grid", ROOT / "scripts" / "tct_grid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tct_grid"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_planned_run_has_a_config_and_a_unique_name():
    grid = _script()
    runs = grid.plan()
    for run in runs:
        assert (ROOT / run.config).is_file(), run.name
    assert len({r.name for r in runs}) == len(runs)
    # the whole grid: 5 detectors x 4 sigmoid methods + RetinaNet's ce, x 3 seeds; 7 ablation variants x 3
    assert sum(r.method.name in {m.name for m in grid.METHODS} for r in runs) == (5 * 4 + 1) * 3
    assert sum(r.method in grid.ABLATION for r in runs) == 7 * 3


def test_order_is_retinanet_rows_then_ablation_then_other_detectors():
    grid = _script()
    names = [r.name for r in grid.plan()]
    assert names[:5] == [
        "retinanet_ce_s0",
        "retinanet_focal_s0",
        "retinanet_gradlibra_s0",
        "retinanet_cdb_s0",
        "retinanet_gradlibra_copypaste_s0",
    ]
    assert names[5] == "retinanet_ce_s1"
    assert [n.rsplit("_", 1)[0] for n in names[15:18]] == ["retinanet_gol", "retinanet_iif", "retinanet_pcb"]
    assert names[24].startswith("retinanet_gl_")
    assert names.index("reppoints_focal_s0") > max(
        i for i, n in enumerate(names) if n.startswith("retinanet_gl_")
    )
    assert grid.baseline_of("retinanet") == "ce" and grid.baseline_of("fcos") == "focal"


def test_config_hash_follows_config_and_options_and_status_reads_it(tmp_path, monkeypatch):
    grid = _script()
    runs = {r.name: r for r in grid.plan()}
    gl, beta0, gl_s1 = (
        runs["retinanet_gradlibra_s0"],
        runs["retinanet_gl_beta0_s0"],
        runs["retinanet_gradlibra_s1"],
    )
    assert grid.config_hash(gl) == grid.config_hash(gl)
    assert len({grid.config_hash(gl), grid.config_hash(beta0), grid.config_hash(gl_s1)}) == 3
    monkeypatch.setattr(grid, "RUNS", tmp_path)
    assert grid.status(gl) == "missing"
    (tmp_path / f"{gl.name}.json").write_text(json.dumps({"config_hash": grid.config_hash(gl)}))
    assert grid.status(gl) == "done"
    (tmp_path / f"{gl.name}.json").write_text(json.dumps({"config_hash": "0" * 16}))
    assert grid.status(gl) == "stale"
